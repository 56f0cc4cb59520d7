package dev.lathe.core.engine;

/**
 * Limits of one step.
 *
 * @param maxNumSeqs           sequences in the running set (each sample of an {@code n > 1} request counts)
 * @param maxNumBatchedTokens  tokens computed per step, prefill chunks and decodes together
 * @param guaranteeNoEvict     admit a waiting sequence only when the KV blocks of every running sequence's whole
 *                             prompt + max tokens, and its own, fit in the pool, so that no sequence is preempted
 *                             (TensorRT-LLM's GUARANTEED_NO_EVICT); false admits whatever fits now and preempts the
 *                             youngest when blocks run out (maximum utilisation)
 * @param admissionWatermark   the share of the pool's blocks a waiting sequence may not take while others run: it is
 *                             admitted only when the free blocks, less those its tokens so far need, stay at or above
 *                             {@code (int) (admissionWatermark * blocks)}. The slack lets the running sequences grow
 *                             for a while before one must be preempted and recomputed; 0 admits down to the last block.
 *                             Not applied under {@code guaranteeNoEvict}, which reserves that growth already
 */
public record SchedulerConfig(int maxNumSeqs, int maxNumBatchedTokens, boolean guaranteeNoEvict, double admissionWatermark) {
    /** Maximum utilisation: admit what fits now, preempt when blocks run out. */
    public SchedulerConfig(int maxNumSeqs, int maxNumBatchedTokens) { this(maxNumSeqs, maxNumBatchedTokens, false); }

    /** No admission watermark. */
    public SchedulerConfig(int maxNumSeqs, int maxNumBatchedTokens, boolean guaranteeNoEvict) {
        this(maxNumSeqs, maxNumBatchedTokens, guaranteeNoEvict, 0);
    }

    public SchedulerConfig {
        checkWatermark(admissionWatermark);
        if (maxNumSeqs < 1) throw new IllegalArgumentException("maxNumSeqs must be >= 1, got " + maxNumSeqs);
        if (maxNumBatchedTokens < 1) {
            throw new IllegalArgumentException("maxNumBatchedTokens must be >= 1, got " + maxNumBatchedTokens);
        }
    }

    /** An admission watermark must be in [0, 1): the share of the blocks a request may not take while others run. */
    static void checkWatermark(double admissionWatermark) {
        if (!(admissionWatermark >= 0 && admissionWatermark < 1)) {
            throw new IllegalArgumentException("admissionWatermark must be in [0, 1), got " + admissionWatermark);
        }
    }
}
