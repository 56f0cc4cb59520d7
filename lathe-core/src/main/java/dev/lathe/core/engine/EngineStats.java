package dev.lathe.core.engine;

/**
 * A snapshot of the engine for metrics and health, read from any thread.
 *
 * @param waiting           requests queued, not yet scheduled
 * @param running           requests with KV blocks this step
 * @param kvBlocksTotal     blocks in the pool
 * @param kvBlocksUsed      blocks referenced by running requests
 * @param prefixQueries     prompt tokens looked up in the prefix cache, since start
 * @param prefixHits        of those, tokens found
 * @param preemptions       requests preempted (recomputed later), since start
 * @param generatedTokens   tokens sampled, since start
 * @param steps             model steps run, since start
 * @param runnerNanos       time inside the model runner's steps, since start: the runner's own host work (inputs,
 *                          metadata, launches), the backend's work and the waits for it
 * @param hostNanos         time of the engine thread's own work around those steps (scheduling, building each step's
 *                          batch, sampling and stop checks, pushing deltas), since start: the part a step-N /
 *                          step-N+1 overlap would hide
 */
public record EngineStats(int waiting, int running, int kvBlocksTotal, int kvBlocksUsed, long prefixQueries,
                          long prefixHits, long preemptions, long generatedTokens, long steps, long runnerNanos,
                          long hostNanos) {
    /** The engine thread's own share of its stepping time, 0 before the first step. */
    public double hostShare() {
        long all = runnerNanos + hostNanos;
        return all == 0 ? 0 : hostNanos / (double) all;
    }

    public double kvUsage() { return kvBlocksTotal == 0 ? 0 : kvBlocksUsed / (double) kvBlocksTotal; }

    public double prefixHitRate() { return prefixQueries == 0 ? 0 : prefixHits / (double) prefixQueries; }
}
