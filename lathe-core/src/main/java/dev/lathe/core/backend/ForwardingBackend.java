package dev.lathe.core.backend;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;

import java.util.List;
import java.util.Optional;

/**
 * A backend that hands every call to another, default methods included: a subclass overrides only what it
 * adds. Forwarding the defaults matters: a wrapper that left, say, {@link #ropeWriteKv} to the interface's
 * default would run the unfused ops on the wrapped backend, correct but slower, and nothing would say so
 * ({@code ForwardingBackendTest} holds every method of {@link Backend} to being forwarded here).
 */
public abstract class ForwardingBackend implements Backend {
    protected final Backend inner;

    protected ForwardingBackend(Backend inner) { this.inner = inner; }

    @Override public String name() { return inner.name(); }
    @Override public Mark mark() { return inner.mark(); }
    @Override public Tensor allocate(DType dtype, int rows, int cols) { return inner.allocate(dtype, rows, cols); }
    @Override public Tensor upload(float[] data, int rows, int cols) { return inner.upload(data, rows, cols); }
    @Override public Tensor upload(int[] data, int rows, int cols) { return inner.upload(data, rows, cols); }
    @Override public Tensor[] uploadInts(int[][] data, int[] rows, int[] cols) { return inner.uploadInts(data, rows, cols); }
    @Override public float[] download(Tensor t) { return inner.download(t); }
    @Override public Optional<Memory> memory() { return inner.memory(); }
    @Override public boolean supportsGraphs() { return inner.supportsGraphs(); }
    @Override public Graph capture(Runnable ops) { return inner.capture(ops); }
    @Override public void write(Tensor dst, int[] data) { inner.write(dst, data); }
    @Override public void write(Tensor dst, float[] data) { inner.write(dst, data); }
    @Override public Weight load(WeightTensor t) { return inner.load(t); }
    @Override public Weight loadFused(String name, List<WeightTensor> parts) { return inner.loadFused(name, parts); }
    @Override public Weight random(String name, DType dtype, int rows, int cols, long seed, float mean, float std) {
        return inner.random(name, dtype, rows, cols, seed, mean, std);
    }
    @Override public KvCache allocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        return inner.allocateKvCache(numLayers, numBlocks, blockSize, numKvHeads, headDim, dtype);
    }
    @Override public void embedding(Weight table, Tensor ids, Tensor out) { inner.embedding(table, ids, out); }
    @Override public void rmsNorm(Tensor x, Weight weight, float eps, Tensor out) { inner.rmsNorm(x, weight, eps, out); }
    @Override public void addRmsNorm(Tensor residual, Tensor x, Weight weight, float eps, Tensor out) {
        inner.addRmsNorm(residual, x, weight, eps, out);
    }
    @Override public void linear(Tensor x, Weight w, Weight bias, Tensor out) { inner.linear(x, w, bias, out); }
    @Override public void splitColumns(Tensor src, Tensor... outs) { inner.splitColumns(src, outs); }
    @Override public void rope(Tensor x, Tensor cos, Tensor sin) { inner.rope(x, cos, sin); }
    @Override public void writeKv(KvCache cache, int layer, Tensor k, Tensor v, Tensor slotMapping) {
        inner.writeKv(cache, layer, k, v, slotMapping);
    }
    @Override public void ropeWriteKv(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, Tensor slotMapping) {
        inner.ropeWriteKv(qkv, q, cos, sin, cache, layer, slotMapping);
    }
    @Override public void attention(Tensor q, KvCache cache, int layer, AttentionMetadata meta, float scale, Tensor out) {
        inner.attention(q, cache, layer, meta, scale, out);
    }
    @Override public void ropeAttention(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer,
                                        AttentionMetadata meta, float scale, Tensor out) {
        inner.ropeAttention(qkv, q, cos, sin, cache, layer, meta, scale, out);
    }
    @Override public void siluMul(Tensor x, Tensor out) { inner.siluMul(x, out); }
    @Override public void mlp(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor out) {
        inner.mlp(h, gateUp, gateUpBias, down, downBias, out);
    }
    @Override public void linearSiluMul(Tensor x, Weight w, Weight bias, Tensor out) { inner.linearSiluMul(x, w, bias, out); }
    @Override public boolean addsIntoResidual(Weight w, int rows) { return inner.addsIntoResidual(w, rows); }
    @Override public void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) { inner.linearAdd(x, w, bias, acc); }
    @Override public void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
        inner.mlpAdd(h, gateUp, gateUpBias, down, downBias, acc);
    }
    @Override public void gatherRows(Tensor x, Tensor rows, Tensor out) { inner.gatherRows(x, rows, out); }
    @Override public boolean supportsSampling() { return inner.supportsSampling(); }
    @Override public DType activationFormat(Weight w, int rows) { return inner.activationFormat(w, rows); }
    @Override public DType projectionFormat(Weight w, int rows) { return inner.projectionFormat(w, rows); }
    @Override public DType residualFormat(Weight w, int rows) { return inner.residualFormat(w, rows); }
    @Override public int[] sampleRows(Tensor logits, SampleSpec[] specs) { return inner.sampleRows(logits, specs); }
    @Override public int[] argmaxRows(Tensor x) { return inner.argmaxRows(x); }
    @Override public boolean supportsAsyncSteps() { return inner.supportsAsyncSteps(); }
    @Override public PendingTokens argmaxRowsAsync(Tensor x) { return inner.argmaxRowsAsync(x); }
    @Override public void forwardTokens(Tensor tokens, int[] srcRows, Tensor ids, int[] dstRows) {
        inner.forwardTokens(tokens, srcRows, ids, dstRows);
    }
    @Override public void close() { inner.close(); }
}
