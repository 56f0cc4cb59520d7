package dev.lathe.cpu;

/**
 * Causal paged attention with grouped query heads, one (query row, head) pair per work item. Two
 * passes in float32: scores {@code q . k * scale} over the visible keys, then softmax with the maximum
 * subtracted, then the weighted sum of the values.
 *
 * <p>Layouts: q and out {@code [numTokens, numHeads * headDim]}; per layer the cache is
 * {@code [numBlocks, blockSize, numKvHeads, headDim]}; query head {@code h} reads KV head
 * {@code h / (numHeads / numKvHeads)}.
 */
final class PagedAttention {
    private static final long PARALLEL_WORK = 1 << 14;

    /** Where each packed query row sits: its sequence, its position, its first visible key. */
    record Plan(int[] seqOfRow, int[] position, int[] firstKey, int[] blockTables, int maxBlocksPerSeq, int maxContext) {}

    private PagedAttention() {}

    static void run(WorkerPool pool, float[] q, int n, int numHeads, CpuKvCache cache, int layer, Plan plan,
                    float scale, float[] out) {
        int headDim = cache.headDim();
        int kvHeads = cache.numKvHeads();
        int group = numHeads / kvHeads;
        float[] keys = cache.keys(layer);
        float[] values = cache.values(layer);
        long work = (long) n * numHeads * plan.maxContext() * headDim;
        int items = n * numHeads;
        pool.forRange(items, work < PARALLEL_WORK ? items : 1, (from, to) -> {
            float[] scores = new float[plan.maxContext()];
            float[] acc = new float[headDim];
            for (int item = from; item < to; item++) {
                int row = item / numHeads, head = item % numHeads;
                one(q, row * numHeads * headDim + head * headDim, headDim, head / group, kvHeads, cache.blockSize(),
                        keys, values, plan, row, scale, scores, acc, out);
            }
        });
    }

    private static void one(float[] q, int qOff, int headDim, int kvHead, int kvHeads, int blockSize,
                            float[] keys, float[] values, Plan plan, int row, float scale,
                            float[] scores, float[] acc, float[] out) {
        int seq = plan.seqOfRow()[row];
        int first = plan.firstKey()[row], last = plan.position()[row];
        int tableOff = seq * plan.maxBlocksPerSeq();
        float max = Float.NEGATIVE_INFINITY;
        for (int t = first; t <= last; t++) {
            int slot = plan.blockTables()[tableOff + t / blockSize] * blockSize + t % blockSize;
            float s = VectorMath.dot(q, qOff, keys, (slot * kvHeads + kvHead) * headDim, headDim) * scale;
            scores[t - first] = s;
            max = Math.max(max, s);
        }
        float sum = 0f;
        for (int t = first; t <= last; t++) {
            float e = (float) Math.exp(scores[t - first] - max);
            scores[t - first] = e;
            sum += e;
        }
        java.util.Arrays.fill(acc, 0f);
        for (int t = first; t <= last; t++) {
            int slot = plan.blockTables()[tableOff + t / blockSize] * blockSize + t % blockSize;
            VectorMath.axpy(scores[t - first], values, (slot * kvHeads + kvHead) * headDim, acc, headDim);
        }
        float inv = 1f / sum;
        for (int d = 0; d < headDim; d++) out[qOff + d] = acc[d] * inv;
    }
}
