package dev.lathe.cpu;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

import static dev.lathe.cpu.Fixtures.assertRelative;
import static dev.lathe.cpu.Fixtures.nans;
import static dev.lathe.cpu.Fixtures.normals;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * writeKv + attention against a direct softmax over each sequence's contiguous keys and values,
 * in double precision. Sequences mix prefill (every token new), chunked prefill and decode rows.
 */
class PagedAttentionTest {
    private static final CpuBackend backend = new CpuBackend(3);

    @AfterAll
    static void closeBackend() { backend.close(); }

    /** One sequence: its full keys/values [context, kvHeads * headDim] and its query rows [qLen, heads * headDim]. */
    record Seq(int context, int qLen, float[] k, float[] v, float[] q) {}

    record Shape(int heads, int kvHeads, int headDim, int blockSize, int window) {}

    static Seq seq(Random rnd, Shape s, int context, int qLen) {
        return new Seq(context, qLen, normals(rnd, context * s.kvHeads * s.headDim),
                normals(rnd, context * s.kvHeads * s.headDim), normals(rnd, qLen * s.heads * s.headDim));
    }

    /** Plain softmax attention for query row i of a sequence, causal, with the sliding window. */
    static double[] oracle(Shape s, List<Seq> seqs, float scale) {
        int width = s.heads * s.headDim, kvWidth = s.kvHeads * s.headDim, group = s.heads / s.kvHeads;
        List<Double> out = new ArrayList<>();
        for (Seq q : seqs) {
            for (int i = 0; i < q.qLen; i++) {
                int pos = q.context - q.qLen + i;
                int first = s.window > 0 ? Math.max(0, pos - s.window + 1) : 0;
                for (int h = 0; h < s.heads; h++) {
                    int kvh = h / group;
                    double[] score = new double[pos + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int t = first; t <= pos; t++) {
                        double dot = 0;
                        for (int d = 0; d < s.headDim; d++) {
                            dot += (double) q.q[i * width + h * s.headDim + d] * q.k[t * kvWidth + kvh * s.headDim + d];
                        }
                        score[t] = dot * scale;
                        max = Math.max(max, score[t]);
                    }
                    double sum = 0;
                    for (int t = first; t <= pos; t++) sum += Math.exp(score[t] - max);
                    for (int d = 0; d < s.headDim; d++) {
                        double acc = 0;
                        for (int t = first; t <= pos; t++) {
                            acc += Math.exp(score[t] - max) / sum * q.v[t * kvWidth + kvh * s.headDim + d];
                        }
                        out.add(acc);
                    }
                }
            }
        }
        return out.stream().mapToDouble(Double::doubleValue).toArray();
    }

    /**
     * Writes every sequence's earlier tokens as previous steps would have, then this step's tokens,
     * into blocks handed out in the order of {@code blockOrder}, and runs attention over the batch.
     */
    static float[] run(Shape s, List<Seq> seqs, List<Integer> blockOrder, int numBlocks, float scale, DType cacheType) {
        int width = s.heads * s.headDim, kvWidth = s.kvHeads * s.headDim, bs = s.blockSize;
        int numSeqs = seqs.size(), maxBlocks = 0, numTokens = 0, maxContext = 0;
        for (Seq q : seqs) {
            maxBlocks = Math.max(maxBlocks, (q.context + bs - 1) / bs + 1); // +1: padding with -1 must be ignored
            numTokens += q.qLen;
            maxContext = Math.max(maxContext, q.context);
        }
        int[] tables = new int[numSeqs * maxBlocks];
        java.util.Arrays.fill(tables, -1);
        int next = 0;
        for (int si = 0; si < numSeqs; si++) {
            for (int b = 0; b < (seqs.get(si).context + bs - 1) / bs; b++) tables[si * maxBlocks + b] = blockOrder.get(next++);
        }
        int[] starts = new int[numSeqs + 1], lens = new int[numSeqs], slots = new int[numTokens];
        float[] q = new float[numTokens * width];
        try (KvCache cache = backend.allocateKvCache(2, numBlocks, bs, s.kvHeads, s.headDim, cacheType)) {
            for (int si = 0; si < numSeqs; si++) {
                Seq sq = seqs.get(si);
                starts[si + 1] = starts[si] + sq.qLen;
                lens[si] = sq.context;
                System.arraycopy(sq.q, 0, q, starts[si] * width, sq.qLen * width);
                for (int t = 0; t < sq.context; t++) {
                    int slot = tables[si * maxBlocks + t / bs] * bs + t % bs;
                    if (t >= sq.context - sq.qLen) {
                        slots[starts[si] + t - (sq.context - sq.qLen)] = slot;
                    } else {
                        writeOne(cache, sq, t, slot, kvWidth); // an earlier step
                    }
                }
            }
            float[] newK = new float[numTokens * kvWidth], newV = new float[numTokens * kvWidth];
            for (int si = 0; si < numSeqs; si++) {
                Seq sq = seqs.get(si);
                int from = (sq.context - sq.qLen) * kvWidth;
                System.arraycopy(sq.k, from, newK, starts[si] * kvWidth, sq.qLen * kvWidth);
                System.arraycopy(sq.v, from, newV, starts[si] * kvWidth, sq.qLen * kvWidth);
            }
            try (Tensor kt = backend.upload(newK, numTokens, kvWidth);
                 Tensor vt = backend.upload(newV, numTokens, kvWidth);
                 var meta = new AttentionMetadata(numSeqs, numTokens, maxContext, backend.upload(starts, 1, numSeqs + 1),
                         backend.upload(lens, 1, numSeqs), backend.upload(tables, numSeqs, maxBlocks),
                         backend.upload(slots, 1, numTokens), starts, lens, s.window);
                 Tensor qt = backend.upload(q, numTokens, width);
                 Tensor ot = backend.upload(nans(numTokens * width), numTokens, width)) {
                backend.writeKv(cache, 1, kt, vt, meta.slotMapping());
                backend.attention(qt, cache, 1, meta, scale, ot);
                return backend.download(ot);
            }
        }
    }

    private static void writeOne(KvCache cache, Seq sq, int t, int slot, int kvWidth) {
        float[] k = new float[kvWidth], v = new float[kvWidth];
        System.arraycopy(sq.k, t * kvWidth, k, 0, kvWidth);
        System.arraycopy(sq.v, t * kvWidth, v, 0, kvWidth);
        try (Tensor kt = backend.upload(k, 1, kvWidth); Tensor vt = backend.upload(v, 1, kvWidth);
             Tensor st = backend.upload(new int[]{slot}, 1, 1)) {
            backend.writeKv(cache, 1, kt, vt, st);
        }
    }

    static List<Integer> shuffledBlocks(Random rnd, int numBlocks) {
        List<Integer> order = new ArrayList<>();
        for (int b = 0; b < numBlocks; b++) order.add(b);
        Collections.shuffle(order, rnd);
        return order;
    }

    static List<Integer> contiguousBlocks(int numBlocks) {
        List<Integer> order = new ArrayList<>();
        for (int b = 0; b < numBlocks; b++) order.add(b);
        return order;
    }

    static List<Seq> mixedBatch(Random rnd, Shape s) {
        return List.of(seq(rnd, s, 7, 7),    // prefill of a whole prompt
                seq(rnd, s, 23, 1),         // decode, context not a multiple of the block size
                seq(rnd, s, 1, 1),          // first token
                seq(rnd, s, 37, 5));        // chunked prefill continuing a cached prefix
    }

    @Test
    void matchesOracleForGqaAndPlainHeadsBlockSizesAndSlidingWindow() {
        Random rnd = Fixtures.random("attention");
        for (Shape s : new Shape[]{new Shape(8, 2, 12, 4, 0), new Shape(3, 3, 12, 16, 0),
                new Shape(8, 2, 12, 4, 5), new Shape(4, 1, 64, 16, 20), new Shape(2, 2, 20, 4, 1)}) {
            List<Seq> seqs = mixedBatch(rnd, s);
            float scale = (float) (1 / Math.sqrt(s.headDim));
            int numBlocks = 40;
            float[] got = run(s, seqs, shuffledBlocks(rnd, numBlocks), numBlocks, scale, DType.F32);
            assertRelative("attention " + s, got, oracle(s, seqs, scale));
        }
    }

    @Test
    void shuffledBlockTablesGiveTheSameResultAsContiguousBlocks() {
        Random rnd = Fixtures.random("attention shuffled");
        Shape s = new Shape(8, 2, 12, 4, 0);
        List<Seq> seqs = mixedBatch(rnd, s);
        float[] contiguous = run(s, seqs, contiguousBlocks(40), 40, 0.3f, DType.F32);
        float[] shuffled = run(s, seqs, shuffledBlocks(rnd, 40), 40, 0.3f, DType.F32);
        assertThat(shuffled).containsExactly(contiguous);
    }

    @Test
    void eachSequenceOfAMixedBatchGetsWhatItWouldGetAlone() {
        Random rnd = Fixtures.random("attention batch");
        Shape s = new Shape(4, 2, 12, 4, 0);
        List<Seq> seqs = mixedBatch(rnd, s);
        float[] batch = run(s, seqs, shuffledBlocks(rnd, 40), 40, 0.3f, DType.F32);
        int row = 0, width = s.heads * s.headDim;
        for (Seq q : seqs) {
            float[] alone = run(s, List.of(q), shuffledBlocks(rnd, 40), 40, 0.3f, DType.F32);
            float[] part = java.util.Arrays.copyOfRange(batch, row * width, (row + q.qLen) * width);
            assertThat(part).as("sequence with context %d", q.context).containsExactly(alone);
            row += q.qLen;
        }
    }

    @Test
    void bf16CacheHoldsRoundedValues() {
        Random rnd = Fixtures.random("attention bf16 cache");
        Shape s = new Shape(4, 2, 12, 4, 0);
        List<Seq> seqs = mixedBatch(rnd, s);
        List<Seq> rounded = new ArrayList<>();
        for (Seq q : seqs) rounded.add(new Seq(q.context, q.qLen, bf16(q.k), bf16(q.v), q.q));
        float[] got = run(s, seqs, shuffledBlocks(rnd, 40), 40, 0.3f, DType.BF16);
        assertRelative("bf16 cache", got, oracle(s, rounded, 0.3f));
    }

    private static float[] bf16(float[] x) {
        float[] r = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            // nearest bfloat16, ties to even, computed from the two neighbours
            int bits = Float.floatToRawIntBits(x[i]);
            float lo = Float.intBitsToFloat(bits & 0xFFFF0000), hi = Float.intBitsToFloat((bits & 0xFFFF0000) + 0x10000);
            double dLo = Math.abs((double) x[i] - lo), dHi = Math.abs((double) hi - x[i]);
            r[i] = dLo < dHi ? lo : dHi < dLo ? hi : ((bits >>> 16) & 1) == 0 ? lo : hi;
        }
        return r;
    }

    @Test
    void unsupportedCacheDtypeIsRejected() {
        assertThatThrownBy(() -> backend.allocateKvCache(1, 4, 16, 2, 8, DType.F8_E4M3))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("F8_E4M3");
    }

    @Test
    void blockTableEntryOutsideTheCacheIsRejected() {
        try (KvCache cache = backend.allocateKvCache(1, 2, 4, 1, 8, DType.F32);
             var meta = new AttentionMetadata(1, 1, 3, backend.upload(new int[]{0, 1}, 1, 2),
                     backend.upload(new int[]{3}, 1, 1), backend.upload(new int[]{5}, 1, 1),
                     backend.upload(new int[]{2}, 1, 1), new int[]{0, 1}, new int[]{3}, 0);
             Tensor q = backend.allocate(DType.F32, 1, 8);
             Tensor out = backend.allocate(DType.F32, 1, 8)) {
            assertThatThrownBy(() -> backend.attention(q, cache, 0, meta, 1f, out))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("block-table entry 0 is 5");
        }
    }
}
