package dev.lathe.core.backend;

/**
 * Per-step attention inputs, built once per step and passed down explicitly to every layer.
 * Sequences are packed: sequence {@code s} owns query rows {@code [queryStarts[s], queryStarts[s+1])}.
 * Its new tokens are the last {@code queryLen(s)} of {@code contextLens[s]} tokens, so query row
 * {@code i} of sequence {@code s} sits at position {@code contextLens[s] - queryLen(s) + i} and attends,
 * causally, to positions {@code 0..position} (and only to the last {@code slidingWindow} of them
 * when that is positive).
 *
 * <p>All int tensors live on the backend (dtype I32):
 * @param queryStarts  {@code [1, numSeqs + 1]} prefix sums of query lengths
 * @param contextLens  {@code [1, numSeqs]} tokens in the cache for each sequence after this step's write
 * @param blockTables  {@code [numSeqs, maxBlocksPerSeq]} block ids, padded with -1
 * @param slotMapping  {@code [1, numTokens]} cache slot each new token's K and V are written to
 * @param hostQueryStarts, hostContextLens the same numbers on the host, for launch planning; a step recorded
 *        once and replayed ({@link Backend#capture}) passes upper bounds as context lengths (what its block
 *        tables can hold), so that a plan made when it was recorded holds for every replay
 */
public record AttentionMetadata(int numSeqs, int numTokens, int maxContextLen,
                                Tensor queryStarts, Tensor contextLens, Tensor blockTables, Tensor slotMapping,
                                int[] hostQueryStarts, int[] hostContextLens, int slidingWindow)
        implements AutoCloseable {

    public int queryLen(int seq) { return hostQueryStarts[seq + 1] - hostQueryStarts[seq]; }

    @Override
    public void close() {
        queryStarts.close();
        contextLens.close();
        blockTables.close();
        slotMapping.close();
    }
}
