package dev.lathe.core.engine;

/**
 * Limits of one step.
 *
 * @param maxNumSeqs           sequences in the running set (each sample of an {@code n > 1} request counts)
 * @param maxNumBatchedTokens  tokens computed per step, prefill chunks and decodes together
 */
public record SchedulerConfig(int maxNumSeqs, int maxNumBatchedTokens) {
    public SchedulerConfig {
        if (maxNumSeqs < 1) throw new IllegalArgumentException("maxNumSeqs must be >= 1, got " + maxNumSeqs);
        if (maxNumBatchedTokens < 1) {
            throw new IllegalArgumentException("maxNumBatchedTokens must be >= 1, got " + maxNumBatchedTokens);
        }
    }
}
