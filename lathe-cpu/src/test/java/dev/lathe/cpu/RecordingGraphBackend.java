package dev.lathe.cpu;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;
import dev.lathe.core.sampling.Sampler;

import java.util.ArrayList;
import java.util.List;

/**
 * The CPU backend with graphs as a GPU backend has them, for testing what records and replays steps
 * (ModelRunner's decode graphs) without a GPU: {@link #capture} runs the ops once (harmless here: the
 * inputs are those of the eager step just before, so the KV write rewrites the same values) and records
 * each op with its tensors; {@link Graph#replay} runs the recorded ops again. Tensors allocated while
 * recording outlive their {@code close()} until the graph is closed, as a GPU graph's memory does.
 */
public final class RecordingGraphBackend implements Backend {
    private final CpuBackend inner;
    private List<Runnable> recording;      // non-null while capturing
    private List<Tensor> keptByRecording;
    int captures, replays;
    private final boolean samples;
    private int sampledRows, argmaxCalls, asyncPicks, forwardedTokens;

    public int replays() { return replays; }

    /** Rows drawn by {@link #sampleRows} so far. */
    public int sampledRows() { return sampledRows; }

    /** Calls of {@link #argmaxRows} (and {@link #argmaxRowsAsync}) so far. */
    public int argmaxCalls() { return argmaxCalls; }

    /** Calls of {@link #argmaxRowsAsync} so far. */
    public int asyncPicks() { return asyncPicks; }

    /** Tokens {@link #forwardTokens} moved so far. */
    public int forwardedTokens() { return forwardedTokens; }

    public RecordingGraphBackend(CpuBackend inner) {
        this(inner, false);
    }

    /**
     * With {@code samples}, the backend also {@link #supportsSampling samples rows itself}, the way a GPU
     * backend does, through the reference {@link Sampler#sample(float[], SampleSpec)}.
     */
    public RecordingGraphBackend(CpuBackend inner, boolean samples) {
        this.inner = inner;
        this.samples = samples;
    }

    @Override public boolean supportsSampling() { return samples; }

    @Override
    public int[] sampleRows(Tensor logits, SampleSpec[] specs) {
        if (!samples) return Backend.super.sampleRows(logits, specs);
        if (recording != null) throw new IllegalStateException("sampleRows while recording a graph");
        float[] all = inner.download(u(logits));
        int vocab = logits.cols();
        int[] out = new int[logits.rows()];
        for (int r = 0; r < out.length; r++) {
            if (specs[r] == null) {
                out[r] = Backend.NOT_SAMPLED;
                continue;
            }
            out[r] = Sampler.sample(java.util.Arrays.copyOfRange(all, r * vocab, (r + 1) * vocab), specs[r]);
            sampledRows++;
        }
        return out;
    }

    /** A tensor allocated while recording: its close() waits for the graph's. */
    private record Kept(Tensor inner) implements Tensor {
        @Override public DType dtype() { return inner.dtype(); }
        @Override public int rows() { return inner.rows(); }
        @Override public int cols() { return inner.cols(); }
        @Override public void close() { }
    }

    private static Tensor u(Tensor t) { return t instanceof Kept k ? k.inner : t; }

    private void op(Runnable r) {
        if (recording != null) recording.add(r);
        r.run();
    }

    @Override public boolean supportsGraphs() { return true; }

    @Override
    public Graph capture(Runnable ops) {
        if (recording != null) throw new IllegalStateException("already capturing");
        List<Runnable> steps = new ArrayList<>();
        List<Tensor> kept = new ArrayList<>();
        recording = steps;
        keptByRecording = kept;
        try {
            ops.run();
        } finally {
            recording = null;
            keptByRecording = null;
        }
        captures++;
        return new Graph() {
            private boolean closed;

            @Override
            public void replay() {
                if (closed) throw new IllegalStateException("graph was closed");
                replays++;
                for (Runnable r : steps) r.run();
            }

            @Override
            public void close() {
                if (closed) return;
                closed = true;
                for (Tensor t : kept) t.close();
            }
        };
    }

    @Override public void write(Tensor dst, int[] data) { inner.write(u(dst), data); }
    @Override public void write(Tensor dst, float[] data) { inner.write(u(dst), data); }

    @Override public String name() { return "cpu+graphs"; }

    @Override
    public Tensor allocate(DType dtype, int rows, int cols) {
        Tensor t = inner.allocate(dtype, rows, cols);
        if (recording == null) return t;
        keptByRecording.add(t);
        return new Kept(t);
    }

    @Override public Tensor upload(float[] data, int rows, int cols) {
        if (recording != null) throw new IllegalStateException("upload while recording");
        return inner.upload(data, rows, cols);
    }
    @Override public Tensor upload(int[] data, int rows, int cols) {
        if (recording != null) throw new IllegalStateException("upload while recording");
        return inner.upload(data, rows, cols);
    }
    @Override public float[] download(Tensor t) {
        if (recording != null) throw new IllegalStateException("download while recording");
        return inner.download(u(t));
    }
    @Override public int[] argmaxRows(Tensor x) {
        if (recording != null) throw new IllegalStateException("argmaxRows while recording");
        argmaxCalls++;
        return inner.argmaxRows(u(x));
    }

    @Override public boolean supportsAsyncSteps() { return inner.supportsAsyncSteps(); }

    @Override public PendingTokens argmaxRowsAsync(Tensor x) {
        if (recording != null) throw new IllegalStateException("argmaxRowsAsync while recording");
        argmaxCalls++;
        asyncPicks++;
        return inner.argmaxRowsAsync(u(x));
    }

    @Override public void forwardTokens(Tensor tokens, int[] srcRows, Tensor ids, int[] dstRows) {
        if (recording != null) throw new IllegalStateException("forwardTokens while recording");
        forwardedTokens += srcRows.length;
        inner.forwardTokens(u(tokens), srcRows, u(ids), dstRows);
    }
    @Override public Weight load(WeightTensor t) { return inner.load(t); }
    @Override public Weight loadFused(String name, List<WeightTensor> parts) { return inner.loadFused(name, parts); }
    @Override public Weight random(String name, DType dtype, int rows, int cols, long seed, float mean, float std) {
        return inner.random(name, dtype, rows, cols, seed, mean, std);
    }
    @Override public KvCache allocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        return inner.allocateKvCache(numLayers, numBlocks, blockSize, numKvHeads, headDim, dtype);
    }
    @Override public void embedding(Weight table, Tensor ids, Tensor out) {
        Tensor i = u(ids), o = u(out);
        op(() -> inner.embedding(table, i, o));
    }
    @Override public void rmsNorm(Tensor x, Weight weight, float eps, Tensor out) {
        Tensor a = u(x), o = u(out);
        op(() -> inner.rmsNorm(a, weight, eps, o));
    }
    @Override public void addRmsNorm(Tensor residual, Tensor x, Weight weight, float eps, Tensor out) {
        Tensor r = u(residual), a = u(x), o = u(out);
        op(() -> inner.addRmsNorm(r, a, weight, eps, o));
    }
    @Override public void linear(Tensor x, Weight w, Weight bias, Tensor out) {
        Tensor a = u(x), o = u(out);
        op(() -> inner.linear(a, w, bias, o));
    }
    @Override public void splitColumns(Tensor src, Tensor... outs) {
        Tensor s = u(src);
        Tensor[] o = new Tensor[outs.length];
        for (int i = 0; i < outs.length; i++) o[i] = u(outs[i]);
        op(() -> inner.splitColumns(s, o));
    }
    @Override public void rope(Tensor x, Tensor cos, Tensor sin) {
        Tensor a = u(x), c = u(cos), s = u(sin);
        op(() -> inner.rope(a, c, s));
    }
    @Override public void writeKv(KvCache cache, int layer, Tensor k, Tensor v, Tensor slotMapping) {
        Tensor a = u(k), b = u(v), m = u(slotMapping);
        op(() -> inner.writeKv(cache, layer, a, b, m));
    }
    @Override public void mlp(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor out) {
        Tensor a = u(h), o = u(out);
        op(() -> inner.mlp(a, gateUp, gateUpBias, down, downBias, o));
    }
    @Override public void linearSiluMul(Tensor x, Weight w, Weight bias, Tensor out) {
        Tensor a = u(x), o = u(out);
        op(() -> inner.linearSiluMul(a, w, bias, o));
    }
    @Override public void ropeWriteKv(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, Tensor slotMapping) {
        Tensor a = u(qkv), b = u(q), c = u(cos), s = u(sin), m = u(slotMapping);
        op(() -> inner.ropeWriteKv(a, b, c, s, cache, layer, m));
    }
    @Override public void attention(Tensor q, KvCache cache, int layer, AttentionMetadata meta, float scale, Tensor out) {
        Tensor a = u(q), o = u(out);
        op(() -> inner.attention(a, cache, layer, meta, scale, o));
    }
    @Override public void siluMul(Tensor x, Tensor out) {
        Tensor a = u(x), o = u(out);
        op(() -> inner.siluMul(a, o));
    }
    @Override public void gatherRows(Tensor x, Tensor rows, Tensor out) {
        Tensor a = u(x), r = u(rows), o = u(out);
        op(() -> inner.gatherRows(a, r, o));
    }
    @Override public void close() { inner.close(); }
}
