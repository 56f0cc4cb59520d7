package dev.lathe.cuda;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.Event;

import java.util.Arrays;
import java.util.Locale;

/**
 * Timings of single ops at Llama-3-8B shapes (batch 1, batch 256, and one layer of a 2048-token prefill): device time per op between two events
 * around {@code ITERS} back-to-back launches (so launch gaps count), after a warm-up. Inputs are seeded
 * random values, never zeros. Not a benchmark of the engine; a baseline for the kernel work to come.
 */
public final class OpTimings {
    private static final int WARMUP = 200, ITERS = 100;
    /** A Llama-3-8B layer's GEMMs as (in, out) features, and their names. */
    private static final int[][] LAYER_GEMMS = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
    private static final String[] LAYER_GEMM_NAMES = {"qkv", "o", "gate/up", "down"};

    public static void main(String[] args) {
        try (CudaBackend gpu = new CudaBackend(0)) {
            System.out.println("GPU: " + gpu.device());
            System.out.printf(Locale.ROOT, "%-40s %10s %10s%n", "op", "us/op", "GB/s");
            linear(gpu, "linear bf16 qkv 4096->6144, n=1", 1, 4096, 6144);
            linear(gpu, "linear bf16 o 4096->4096, n=1", 1, 4096, 4096);
            linear(gpu, "linear bf16 gate/up 4096->28672, n=1", 1, 4096, 28672);
            linear(gpu, "linear bf16 down 14336->4096, n=1", 1, 14336, 4096);
            linear(gpu, "linear bf16 lm head 4096->128256, n=1", 1, 4096, 128256);
            try (Weight w = gpu.random("gu", DType.BF16, 28672, 4096, 8, 0f, 0.02f);
                 Tensor x = gpu.upload(Host.normal(new java.util.Random(1), 4096, 1f), 1, 4096);
                 Tensor act = gpu.allocate(DType.F32, 1, 14336)) {
                report("linearSiluMul gate/up 4096->2x14336, n=1", micros(gpu, () -> gpu.linearSiluMul(x, w, null, act)),
                        2.0 * 4096 * 28672 + 4.0 * (4096 + 14336));
            }
            norm(gpu);
            attention(gpu, 2048, 1, "");
            int old = gpu.maxAttentionSplits(64);
            attention(gpu, 2048, 1, ", context split");
            attention(gpu, 256, 1, ", context split");
            gpu.maxAttentionSplits(old);
            attention(gpu, 256, 1, "");
            boolean oldGqa = gpu.flashGqa(false);
            try {
                attention(gpu, 2048, 2048, ", plain flash");
                gpu.flashGqa(true);
                attention(gpu, 2048, 2048, ", grouped-query flash");
                attention(gpu, 1, 2048, 2048, ", grouped-query flash -> BF16", DType.BF16);
            } finally {
                gpu.flashGqa(oldGqa);
            }
            // a batch-256 decode step: the projections as GEMMs, attention over 256 sequences
            linear(gpu, "linear bf16 qkv 4096->6144, n=256", 256, 4096, 6144);
            linear(gpu, "linear bf16 o 4096->4096, n=256", 256, 4096, 4096);
            linear(gpu, "linear bf16 gate/up 4096->28672, n=256", 256, 4096, 28672);
            linear(gpu, "linear bf16 down 14336->4096, n=256", 256, 14336, 4096);
            linear(gpu, "linear bf16 lm head 4096->128256, n=256", 256, 4096, 128256);
            attention(gpu, 256, 192, 1, "");
            attention(gpu, 256, 1024, 1, "");  // the mean context of a 128/2048 run
            try (Tensor gu = gpu.upload(Host.normal(new java.util.Random(5), 256 * 28672, 1f), 256, 28672);
                 Tensor act = gpu.allocate(DType.F32, 256, 14336)) {
                report("siluMul 14336, n=256", micros(gpu, () -> gpu.siluMul(gu, act)), 4.0 * 256 * (28672 + 14336));
            }
            for (int rows : new int[]{256, 512, 1024}) layerGemms(gpu, rows);  // decode-step GEMMs, batch 256 to 1024
            for (int rows : new int[]{256, 1024, 2048}) gemmOutputs(gpu, rows);
            prefillLayer(gpu, 2048);
            for (int rows : new int[]{1, 64, 256}) {
                try (Tensor logits = gpu.upload(Host.normal(new java.util.Random(7), rows * 128256, 3f), rows, 128256)) {
                    dev.lathe.core.backend.SampleSpec[] specs = new dev.lathe.core.backend.SampleSpec[rows];
                    java.util.Arrays.fill(specs, new dev.lathe.core.backend.SampleSpec(1f / 0.8f, 50, 0.9, 0f, 42, 7));
                    report("sampleRows top-k 50 top-p 0.9, " + rows + " x 128256", micros(gpu, () -> gpu.sampleRows(logits, specs)),
                            4.0 * rows * 128256);
                }
            }
        }
    }

    /** A layer's four GEMMs at n rows (Llama-3-8B shapes) with their TFLOP/s: cuBLASLt's heuristic choice, then tuned. */
    private static void layerGemms(CudaBackend gpu, int n) {
        java.util.Random rnd = new java.util.Random(6);
        for (boolean tuned : new boolean[]{false, true}) {  // cuBLASLt's heuristic choice, then the fastest of its candidates
            boolean old = gpu.gemmTuning(tuned);
            for (int i = 0; i < LAYER_GEMMS.length; i++) {
                int in = LAYER_GEMMS[i][0], out = LAYER_GEMMS[i][1];
                int rows = n;
                try (Weight w = gpu.random("w", DType.BF16, out, in, 9, 0f, 0.02f);
                     Tensor x = gpu.upload(Host.normal(rnd, rows * in, 1f), rows, in); Tensor y = gpu.allocate(DType.F32, rows, out)) {
                    double us = micros(gpu, () -> gpu.linear(x, w, null, y));
                    System.out.printf(Locale.ROOT, "%-40s %10.1f %10.0f TFLOP/s%n", "linear bf16 " + LAYER_GEMM_NAMES[i] + " " + in + "->"
                            + out + ", n=" + rows + (tuned ? " tuned" : ""), us, 2.0 * rows * in * out / (us * 1e-6) / 1e12);
                }
            }
            if (tuned) System.out.println("tuned GEMM shapes (rank of the kept algorithm in cuBLASLt's order): " + gpu.gemmChoices());
            gpu.gemmTuning(old);
        }
    }

    /**
     * The layer's four GEMMs alone (16-bit x, no conversion kernel) with D in float32, as every linear stores it,
     * and in BF16: whether the output type costs the GEMM time.
     */
    private static void gemmOutputs(CudaBackend gpu, int n) {
        java.util.Random rnd = new java.util.Random(8);
        for (int i = 0; i < LAYER_GEMMS.length; i++) {
            int in = LAYER_GEMMS[i][0], out = LAYER_GEMMS[i][1];
            try (Weight w = gpu.random("w", DType.BF16, out, in, 9, 0f, 0.02f); Weight norm = gpu.random("g", DType.BF16, 1, in, 3, 1f, 0.02f);
                 Tensor xf = gpu.upload(Host.normal(rnd, n * in, 1f), n, in); Tensor x = gpu.allocate(DType.BF16, n, in);
                 Tensor y32 = gpu.allocate(DType.F32, n, out); Tensor y16 = gpu.allocate(DType.BF16, n, out)) {
                gpu.rmsNorm(xf, norm, 1e-5f, x);  // fills x with BF16 values
                double flop = 2.0 * n * in * out;
                for (Tensor y : new Tensor[]{y32, y16}) {
                    double us = micros(gpu, () -> gpu.gemmOnly(x, w, y));
                    System.out.printf(Locale.ROOT, "%-40s %10.1f %10.0f TFLOP/s%n", "gemm bf16 " + LAYER_GEMM_NAMES[i] + " " + in + "->" + out
                            + ", n=" + n + " -> " + (y == y32 ? "F32" : "BF16"), us, flop / (us * 1e-6) / 1e12);
                }
            }
        }
    }

    /**
     * Every op of one layer of an n-token prefill (Llama-3-8B shapes), so that TTFT splits into its parts: the
     * GEMMs with their TFLOP/s, and the element-wise ops with their GB/s.
     */
    private static void prefillLayer(CudaBackend gpu, int n) {
        layerGemms(gpu, n);
        java.util.Random rnd = new java.util.Random(6);
        int h = 4096;
        try (Weight w = gpu.random("n", DType.BF16, 1, h, 3, 1f, 0.02f);
             Tensor r = gpu.upload(Host.normal(rnd, n * h, 1f), n, h); Tensor x = gpu.upload(Host.normal(rnd, n * h, 1f), n, h);
             Tensor o = gpu.allocate(DType.F32, n, h)) {
            report("addRmsNorm 4096, n=" + n, micros(gpu, () -> gpu.addRmsNorm(r, x, w, 1e-5f, o)), 4.0 * n * h * 4);
            try (Tensor o16 = gpu.allocate(DType.BF16, n, h)) {  // the GEMM input written directly (lathe.norm.fused)
                report("addRmsNorm 4096 -> BF16, n=" + n, micros(gpu, () -> gpu.addRmsNorm(r, x, w, 1e-5f, o16)), 4.0 * n * h * 3 + 2.0 * n * h);
            }
        }
        try (Tensor gu = gpu.upload(Host.normal(rnd, n * 28672, 1f), n, 28672); Tensor act = gpu.allocate(DType.F32, n, 14336)) {
            report("siluMul 14336, n=" + n, micros(gpu, () -> gpu.siluMul(gu, act)), 4.0 * n * (28672 + 14336));
        }
        // the fused MLP's case with a 16-bit gate/up product (lathe.mlp.gate16): BF16 in, BF16 out
        try (Tensor gu16 = gpu.allocate(DType.BF16, n, 28672); Tensor act16 = gpu.allocate(DType.BF16, n, 14336)) {
            report("siluMul 14336 BF16 -> BF16, n=" + n, micros(gpu, () -> gpu.siluMul16(gu16, act16)), 2.0 * n * (28672 + 14336));
        }
        int heads = 32, kvHeads = 8, dim = 128, half = dim / 2, bs = 16, blocks = (n + bs - 1) / bs;
        int[] slots = new int[n];
        for (int i = 0; i < n; i++) slots[i] = i;
        float[] cos = new float[n * half], sin = new float[n * half];
        java.util.Arrays.fill(cos, 0.6f);
        java.util.Arrays.fill(sin, 0.8f);
        int qkvWidth = (heads + 2 * kvHeads) * dim;
        try (KvCache cache = gpu.allocateKvCache(1, blocks, bs, kvHeads, dim, DType.BF16);
             Tensor qkv = gpu.upload(Host.normal(rnd, n * qkvWidth, 1f), n, qkvWidth); Tensor q = gpu.allocate(DType.F32, n, heads * dim);
             Tensor ct = gpu.upload(cos, n, half); Tensor st = gpu.upload(sin, n, half); Tensor sl = gpu.upload(slots, 1, n)) {
            report("ropeWriteKv 32+8+8 heads, n=" + n, micros(gpu, () -> gpu.ropeWriteKv(qkv, q, ct, st, cache, 0, sl)),
                    4.0 * n * qkvWidth + 4.0 * n * heads * dim + 2.0 * 2 * n * kvHeads * dim);
        }
    }

    private interface Op { void run(); }

    private static double micros(CudaBackend gpu, Op op) {
        for (int i = 0; i < WARMUP; i++) op.run();
        try (Event start = gpu.context().createEvent(); Event end = gpu.context().createEvent()) {
            double[] runs = new double[5];
            for (int r = 0; r < runs.length; r++) {
                start.record(gpu.stream());
                for (int i = 0; i < ITERS; i++) op.run();
                end.record(gpu.stream());
                end.synchronize();
                runs[r] = start.millisTo(end) * 1000.0 / ITERS;
            }
            Arrays.sort(runs);
            return runs[runs.length / 2];
        }
    }

    private static void report(String name, double us, double bytes) {
        System.out.printf(Locale.ROOT, "%-40s %10.1f %10.0f%n", name, us, bytes / (us * 1e-6) / 1e9);
    }

    private static void linear(CudaBackend gpu, String name, int n, int in, int out) {
        try (Weight w = gpu.random("w", DType.BF16, out, in, 7, 0f, 0.02f); Tensor x = gpu.upload(Host.normal(new java.util.Random(1), n * in, 1f), n, in);
             Tensor y = gpu.allocate(DType.F32, n, out)) {
            double us = micros(gpu, () -> gpu.linear(x, w, null, y));
            report(name, us, 2.0 * in * out + 4.0 * n * (in + out));
        }
    }

    private static void norm(CudaBackend gpu) {
        int h = 4096;
        try (Weight w = gpu.random("n", DType.BF16, 1, h, 3, 1f, 0.02f); Tensor r = gpu.upload(Host.normal(new java.util.Random(2), h, 1f), 1, h);
             Tensor x = gpu.upload(Host.normal(new java.util.Random(3), h, 1f), 1, h); Tensor o = gpu.allocate(DType.F32, 1, h)) {
            report("addRmsNorm 4096, n=1", micros(gpu, () -> gpu.addRmsNorm(r, x, w, 1e-5f, o)), 4.0 * h * 4);
        }
    }

    private static void attention(CudaBackend gpu, int ctx, int queries, String how) { attention(gpu, 1, ctx, queries, how); }

    /**
     * {@code seqs} sequences of {@code ctx} tokens each, the last {@code queries} of each of them queries; 32
     * heads, 8 KV heads, 128 dims, BF16 cache.
     */
    private static void attention(CudaBackend gpu, int seqs, int ctx, int queries, String how) {
        attention(gpu, seqs, ctx, queries, how, DType.F32);
    }

    private static void attention(CudaBackend gpu, int seqs, int ctx, int queries, String how, DType outType) {
        int heads = 32, kvHeads = 8, dim = 128, bs = 16, blocks = (ctx + bs - 1) / bs, slotsPerSeq = blocks * bs;
        int rows = seqs * queries, tokens = seqs * ctx;
        int[] table = new int[seqs * blocks], slots = new int[tokens], starts = new int[seqs + 1], lens = new int[seqs];
        for (int i = 0; i < table.length; i++) table[i] = i;
        for (int q = 0; q < seqs; q++) {
            for (int i = 0; i < ctx; i++) slots[q * ctx + i] = q * slotsPerSeq + i;
            starts[q + 1] = starts[q] + queries;
            lens[q] = ctx;
        }
        java.util.Random rnd = new java.util.Random(4);
        try (KvCache cache = gpu.allocateKvCache(1, seqs * blocks, bs, kvHeads, dim, DType.BF16);
             Tensor k = gpu.upload(Host.normal(rnd, tokens * kvHeads * dim, 1f), tokens, kvHeads * dim);
             Tensor v = gpu.upload(Host.normal(rnd, tokens * kvHeads * dim, 1f), tokens, kvHeads * dim);
             Tensor s = gpu.upload(slots, 1, tokens);
             Tensor q = gpu.upload(Host.normal(rnd, rows * heads * dim, 1f), rows, heads * dim);
             Tensor o = gpu.allocate(outType, rows, heads * dim);
             AttentionMetadata meta = new AttentionMetadata(seqs, rows, ctx, gpu.upload(starts, 1, seqs + 1),
                     gpu.upload(lens, 1, seqs), gpu.upload(table, seqs, blocks), gpu.upload(new int[rows], 1, rows),
                     starts, lens, 0)) {
            gpu.writeKv(cache, 0, k, v, s);
            double us = micros(gpu, () -> gpu.attention(q, cache, 0, meta, 0.088f, o));
            report("attention " + (seqs > 1 ? seqs + " seqs x " : "") + "ctx " + ctx + ", " + queries + " queries" + how,
                    us, 2.0 * 2 * tokens * kvHeads * dim);
        }
    }
}
