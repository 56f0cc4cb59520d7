package dev.lathe.core.engine;

import java.util.List;

/**
 * What one step computes. Sequences the runner has not seen (new, resumed after preemption, or forked
 * from a sibling) come in full; the others as diffs: the blocks added this step. The sampled token of the
 * previous step is not repeated; the runner appends it to its own copy when it is sampled.
 *
 * @param newSequences  sequences the runner must (re)create; their listed blocks are all they hold
 * @param running       sequences the runner already holds, with blocks added this step
 * @param preempted     sequences whose blocks were freed this step; the runner drops them
 * @param totalTokens   sum of the scheduled token counts (at most the step's token budget)
 */
public record SchedulerOutput(List<NewSequence> newSequences, List<RunningSequence> running, List<Long> preempted,
                              int totalTokens) {
    /**
     * @param tokens        every token of the sequence so far (prompt + output)
     * @param blocks        its KV blocks, in token order
     * @param numComputed   tokens whose KV is already in those blocks (a prefix hit or shared with a sibling)
     * @param numScheduled  tokens to compute this step, from {@code numComputed} on
     */
    public record NewSequence(long seqId, int[] tokens, int[] blocks, int numComputed, int numScheduled) {}

    public record RunningSequence(long seqId, int[] newBlocks, int numScheduled) {}

    public boolean isEmpty() { return totalTokens == 0; }

    public int numSequences() { return newSequences.size() + running.size(); }
}
