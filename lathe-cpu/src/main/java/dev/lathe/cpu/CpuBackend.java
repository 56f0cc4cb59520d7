package dev.lathe.cpu;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.SeededRandom;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The reference backend: every op runs synchronously on the calling thread and this backend's own
 * fixed pool, with Vector API inner loops, weights read in their stored format from the mapped
 * checkpoint, and all math in float32. Tensors are heap arrays ({@link CpuTensor}).
 */
public final class CpuBackend implements Backend {
    /** Elements below which an element-wise op stays on the calling thread. */
    private static final int PARALLEL_ELEMENTS = 1 << 15;

    private final WorkerPool pool;

    /** A backend with {@code threads} worker threads; {@code threads <= 0} means one per processor. */
    public CpuBackend(int threads) {
        this.pool = new WorkerPool(threads > 0 ? threads : Runtime.getRuntime().availableProcessors());
    }

    public int threads() { return pool.threads(); }

    @Override
    public String name() { return "cpu"; }

    // ---- memory -------------------------------------------------------------------------------

    @Override
    public Tensor allocate(DType dtype, int rows, int cols) { return CpuTensor.allocate(dtype, rows, cols); }

    @Override
    public Tensor upload(float[] data, int rows, int cols) { return CpuTensor.of(data, rows, cols); }

    @Override
    public Tensor upload(int[] data, int rows, int cols) { return CpuTensor.of(data, rows, cols); }

    @Override
    public float[] download(Tensor t) { return cpu(t, "download", "t").floats("download", "t").clone(); }

    @Override
    public void write(Tensor dst, int[] data) {
        int[] into = cpu(dst, "write", "dst").ints("write", "dst");
        if (data.length > into.length) throw new IllegalArgumentException("write: " + data.length + " values into " + into.length);
        System.arraycopy(data, 0, into, 0, data.length);
    }

    @Override
    public boolean supportsAsyncSteps() { return true; }

    @Override
    public void forwardTokens(Tensor tokens, int[] srcRows, Tensor ids, int[] dstRows) {
        int[] from = cpu(tokens, "forwardTokens", "tokens").ints("forwardTokens", "tokens");
        int[] into = cpu(ids, "forwardTokens", "ids").ints("forwardTokens", "ids");
        if (srcRows.length != dstRows.length) {
            throw new IllegalArgumentException("forwardTokens: " + srcRows.length + " source rows for " + dstRows.length + " targets");
        }
        for (int i = 0; i < srcRows.length; i++) {
            if (srcRows[i] < 0 || srcRows[i] >= from.length || dstRows[i] < 0 || dstRows[i] >= into.length) {
                throw new IllegalArgumentException("forwardTokens: pair " + i + " (" + srcRows[i] + " -> " + dstRows[i]
                        + ") outside tokens [" + from.length + "] or ids [" + into.length + "]");
            }
            into[dstRows[i]] = Math.max(0, from[srcRows[i]]);  // a NaN row's -1: see Backend.forwardTokens
        }
    }

    @Override
    public void write(Tensor dst, float[] data) {
        float[] into = cpu(dst, "write", "dst").floats("write", "dst");
        if (data.length > into.length) throw new IllegalArgumentException("write: " + data.length + " values into " + into.length);
        System.arraycopy(data, 0, into, 0, data.length);
    }

    @Override
    public Weight load(WeightTensor t) {
        int[] shape = t.matrixShape();
        return new CpuWeight(t.name(), WeightFormats.of(t.dtype(), t.name()), shape[0], shape[1],
                List.of(new CpuWeight.Part(t.data(), 0, shape[0])), null);
    }

    @Override
    public Weight loadFused(String name, List<WeightTensor> parts) {
        if (parts.isEmpty()) throw new IllegalArgumentException("loadFused '" + name + "': no parts");
        WeightTensor first = parts.getFirst();
        WeightFormat format = WeightFormats.of(first.dtype(), first.name());
        int cols = first.matrixShape()[1];
        List<CpuWeight.Part> stacked = new ArrayList<>();
        long rows = 0;
        for (WeightTensor t : parts) {
            int[] shape = t.matrixShape();
            if (t.dtype() != first.dtype() || shape[1] != cols) {
                throw new IllegalArgumentException("loadFused '" + name + "': part '" + t.name() + "' is " + t.dtype()
                        + " " + t.shapeString() + " but '" + first.name() + "' is " + first.dtype() + " "
                        + first.shapeString() + "; fused parts need one dtype and one column count");
            }
            stacked.add(new CpuWeight.Part(t.data(), (int) rows, shape[0]));
            rows += shape[0];
        }
        if (rows > Integer.MAX_VALUE) throw new IllegalArgumentException("loadFused '" + name + "': " + rows + " rows is too many");
        return new CpuWeight(name, format, (int) rows, cols, stacked, null);
    }

    /** Values {@code mean + std * normal(seed, row * cols + col)}, rounded to {@code dtype}, generated in parallel. */
    @Override
    public Weight random(String name, DType dtype, int rows, int cols, long seed, float mean, float std) {
        WeightFormat format = WeightFormats.of(dtype, name);
        if (rows <= 0 || cols <= 0) {
            throw new IllegalArgumentException("random '" + name + "': shape [" + rows + ", " + cols + "] must be positive");
        }
        Arena arena = Arena.ofShared();
        try {
            MemorySegment data = arena.allocate((long) rows * cols * dtype.byteSize(), 64);
            pool.forRange(rows, Math.max(1, 4096 / cols), (r0, r1) -> {
                for (long i = (long) r0 * cols, end = (long) r1 * cols; i < end; i++) {
                    format.store(data, i, mean + std * SeededRandom.normal(seed, i));
                }
            });
            return new CpuWeight(name, format, rows, cols, List.of(new CpuWeight.Part(data, 0, rows)), arena);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    @Override
    public KvCache allocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        return new CpuKvCache(numLayers, numBlocks, blockSize, numKvHeads, headDim, dtype);
    }



    // ---- ops --------------------------------------------------------------------------------

    @Override
    public void embedding(Weight table, Tensor ids, Tensor out) {
        CpuWeight w = cpu(table);
        int[] id = cpu(ids, "embedding", "ids").ints("embedding", "ids");
        CpuTensor o = cpu(out, "embedding", "out");
        float[] of = o.floats("embedding", "out");
        if (ids.rows() != 1 || o.rows() != ids.cols() || o.cols() != w.cols()) {
            throw shapes("embedding", "ids " + shape(ids) + ", table '" + w.name() + "' " + w.shape() + ", out " + o.shape(),
                    "ids must be [1, n] and out [n, table.cols]");
        }
        for (int i = 0; i < id.length; i++) {
            if (id[i] < 0 || id[i] >= w.rows()) {
                throw new IllegalArgumentException("embedding: token id " + id[i] + " at position " + i
                        + " is outside table '" + w.name() + "' " + w.shape());
            }
        }
        int h = w.cols();
        pool.forRange(id.length, Math.max(1, PARALLEL_ELEMENTS / h), (i0, i1) -> {
            for (int i = i0; i < i1; i++) w.row(id[i], of, i * h);
        });
    }

    @Override
    public void rmsNorm(Tensor x, Weight weight, float eps, Tensor out) {
        CpuTensor xt = cpu(x, "rmsNorm", "x"), ot = cpu(out, "rmsNorm", "out");
        CpuWeight w = cpu(weight);
        float[] xs = xt.floats("rmsNorm", "x"), os = ot.floats("rmsNorm", "out");
        checkNormShapes("rmsNorm", xt, ot, w);
        norm(xs, os, w.vector("rmsNorm"), eps);
    }

    @Override
    public void addRmsNorm(Tensor residual, Tensor x, Weight weight, float eps, Tensor out) {
        CpuTensor rt = cpu(residual, "addRmsNorm", "residual"), xt = cpu(x, "addRmsNorm", "x");
        CpuTensor ot = cpu(out, "addRmsNorm", "out");
        CpuWeight w = cpu(weight);
        float[] rs = rt.floats("addRmsNorm", "residual"), os = ot.floats("addRmsNorm", "out");
        if (!sameShape(rt, xt)) {
            throw shapes("addRmsNorm", "residual " + rt.shape() + ", x " + xt.shape(), "residual and x must have one shape");
        }
        checkNormShapes("addRmsNorm", rt, ot, w);
        addInto(rs, xt.floats("addRmsNorm", "x"));
        norm(rs, os, w.vector("addRmsNorm"), eps);
    }

    /**
     * {@link #linearAdd} and {@link #mlpAdd}: the op into a scratch tensor, then the add. Nothing is saved on the CPU,
     * so {@link #addsIntoResidual} stays false and the model adds in the norms; a caller may still ask for them.
     */
    @Override
    public void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) {
        float[] as = cpu(acc, "linearAdd", "acc").floats("linearAdd", "acc");
        try (Tensor t = allocate(DType.F32, acc.rows(), acc.cols())) {
            linear(x, w, bias, t);
            addInto(as, ((CpuTensor) t).floats("linearAdd", "product"));
        }
    }

    @Override
    public void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
        float[] as = cpu(acc, "mlpAdd", "acc").floats("mlpAdd", "acc");
        try (Tensor t = allocate(DType.F32, acc.rows(), acc.cols())) {
            mlp(h, gateUp, gateUpBias, down, downBias, t);
            addInto(as, ((CpuTensor) t).floats("mlpAdd", "product"));
        }
    }

    /** acc += x elementwise (arrays of one length, checked by the caller), the add {@link #addRmsNorm} does. */
    private void addInto(float[] as, float[] xs) {
        pool.forRange(as.length, PARALLEL_ELEMENTS, (i0, i1) -> {
            for (int i = i0; i < i1; i++) as[i] += xs[i];
        });
    }

    private static void checkNormShapes(String op, CpuTensor x, CpuTensor out, CpuWeight w) {
        if (!sameShape(x, out) || w.rows() != 1 || x.cols() % w.cols() != 0) {
            throw shapes(op, "x " + x.shape() + ", weight '" + w.name() + "' " + w.shape() + ", out " + out.shape(),
                    "out must match x and x.cols be a multiple of the [1, d] weight's d");
        }
    }

    /** HF RMSNorm per group of {@code w.length} values: {@code x * (1 / sqrt(mean(x^2) + eps)) * w}. */
    private void norm(float[] x, float[] out, float[] w, float eps) {
        int d = w.length;
        int groups = x.length / d;
        pool.forRange(groups, Math.max(1, PARALLEL_ELEMENTS / d), (g0, g1) -> {
            for (int g = g0; g < g1; g++) {
                int off = g * d;
                float ss = VectorMath.dot(x, off, x, off, d);
                float inv = (float) (1.0 / Math.sqrt(ss / d + eps));
                for (int j = 0; j < d; j++) out[off + j] = (x[off + j] * inv) * w[j];
            }
        });
    }

    @Override
    public void linear(Tensor x, Weight w, Weight bias, Tensor out) {
        CpuTensor xt = cpu(x, "linear", "x"), ot = cpu(out, "linear", "out");
        CpuWeight wt = cpu(w);
        float[] xs = xt.floats("linear", "x"), os = ot.floats("linear", "out");
        float[] b = null;
        if (bias != null) {
            CpuWeight bt = cpu(bias);
            if (bt.rows() != 1 || bt.cols() != wt.rows()) {
                throw shapes("linear", "w '" + wt.name() + "' " + wt.shape() + ", bias '" + bt.name() + "' " + bt.shape(),
                        "bias must be [1, w.rows]");
            }
            b = bt.vector("linear");
        }
        if (xt.cols() != wt.cols() || ot.rows() != xt.rows() || ot.cols() != wt.rows()) {
            throw shapes("linear", "x " + xt.shape() + ", w '" + wt.name() + "' " + wt.shape() + ", out " + ot.shape(),
                    "need x [n, in], w [out, in], out [n, out]");
        }
        Linear.run(pool, xs, xt.rows(), wt, b, os);
    }

    @Override
    public void splitColumns(Tensor src, Tensor... outs) {
        CpuTensor st = cpu(src, "splitColumns", "src");
        float[] s = st.floats("splitColumns", "src");
        long width = 0;
        boolean rowsMatch = true;
        StringBuilder shapes = new StringBuilder();
        for (Tensor o : outs) {
            width += o.cols();
            shapes.append(' ').append(shape(o));
            rowsMatch &= o.rows() == st.rows();
        }
        if (!rowsMatch || width != st.cols()) {
            throw shapes("splitColumns", "src " + st.shape() + ", outs" + shapes, "outs need src's rows and widths summing to src.cols");
        }
        int col = 0;
        for (int k = 0; k < outs.length; k++) {
            float[] o = cpu(outs[k], "splitColumns", "outs[" + k + "]").floats("splitColumns", "outs[" + k + "]");
            int c = outs[k].cols();
            for (int r = 0; r < st.rows(); r++) System.arraycopy(s, r * st.cols() + col, o, r * c, c);
            col += c;
        }
    }

    @Override
    public void rope(Tensor x, Tensor cos, Tensor sin) {
        CpuTensor xt = cpu(x, "rope", "x"), ct = cpu(cos, "rope", "cos"), st = cpu(sin, "rope", "sin");
        float[] xs = xt.floats("rope", "x"), cs = ct.floats("rope", "cos"), ss = st.floats("rope", "sin");
        int half = ct.cols();
        if (!sameShape(ct, st) || ct.rows() != xt.rows() || half == 0 || xt.cols() % (2 * half) != 0) {
            throw shapes("rope", "x " + xt.shape() + ", cos " + ct.shape() + ", sin " + st.shape(),
                    "cos and sin must be [n, half] and x [n, heads * 2 * half]");
        }
        int cols = xt.cols(), heads = cols / (2 * half);
        pool.forRange(xt.rows(), Math.max(1, PARALLEL_ELEMENTS / cols), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                for (int h = 0; h < heads; h++) {
                    int base = r * cols + h * 2 * half;
                    for (int j = 0; j < half; j++) {
                        float c = cs[r * half + j], s = ss[r * half + j];
                        float x1 = xs[base + j], x2 = xs[base + j + half];
                        xs[base + j] = x1 * c - x2 * s;
                        xs[base + j + half] = x2 * c + x1 * s;
                    }
                }
            }
        });
    }

    @Override
    public void writeKv(KvCache cache, int layer, Tensor k, Tensor v, Tensor slotMapping) {
        final int PADDING_SLOT = -1;
        CpuKvCache c = cpu(cache);
        CpuTensor kt = cpu(k, "writeKv", "k"), vt = cpu(v, "writeKv", "v"), mt = cpu(slotMapping, "writeKv", "slotMapping");
        float[] ks = kt.floats("writeKv", "k"), vs = vt.floats("writeKv", "v");
        int[] slots = mt.ints("writeKv", "slotMapping");
        int width = c.numKvHeads() * c.headDim();
        if (!sameShape(kt, vt) || kt.cols() != width || mt.rows() != 1 || mt.cols() != kt.rows()) {
            throw shapes("writeKv", "k " + kt.shape() + ", v " + vt.shape() + ", slotMapping " + mt.shape()
                    + ", cache kvHeads*headDim=" + width, "need k and v [n, kvHeads * headDim] and slotMapping [1, n]");
        }
        float[] kc = c.keys(layer), vc = c.values(layer);
        for (int i = 0; i < slots.length; i++) {
            if (slots[i] == PADDING_SLOT) continue;
            if (slots[i] < 0 || slots[i] >= c.slots()) {
                throw new IllegalArgumentException("writeKv: slot " + slots[i] + " of token " + i + " is outside the cache ("
                        + c.numBlocks() + " blocks x " + c.blockSize() + " slots)");
            }
            for (int j = 0; j < width; j++) {
                kc[slots[i] * width + j] = c.quantize(ks[i * width + j]);
                vc[slots[i] * width + j] = c.quantize(vs[i * width + j]);
            }
        }
    }

    @Override
    public void attention(Tensor q, KvCache cache, int layer, AttentionMetadata meta, float scale, Tensor out) {
        CpuKvCache c = cpu(cache);
        CpuTensor qt = cpu(q, "attention", "q"), ot = cpu(out, "attention", "out");
        float[] qs = qt.floats("attention", "q"), os = ot.floats("attention", "out");
        int headDim = c.headDim();
        if (!sameShape(qt, ot) || qt.cols() % headDim != 0 || (qt.cols() / headDim) % c.numKvHeads() != 0
                || qt.rows() != meta.numTokens()) {
            throw shapes("attention", "q " + qt.shape() + ", out " + ot.shape() + ", cache kvHeads=" + c.numKvHeads()
                    + " headDim=" + headDim + ", meta numTokens=" + meta.numTokens(),
                    "need q = out = [numTokens, heads * headDim] with heads a multiple of kvHeads");
        }
        PagedAttention.Plan plan = plan(meta, c);
        PagedAttention.run(pool, qs, qt.rows(), qt.cols() / headDim, c, layer, plan, scale, os);
    }

    /** Checks the metadata against the cache and turns it into per-row positions and key ranges. */
    private static PagedAttention.Plan plan(AttentionMetadata meta, CpuKvCache c) {
        String op = "attention";
        int numSeqs = meta.numSeqs();
        int[] starts = cpu(meta.queryStarts(), op, "queryStarts").ints(op, "queryStarts");
        int[] lens = cpu(meta.contextLens(), op, "contextLens").ints(op, "contextLens");
        CpuTensor bt = cpu(meta.blockTables(), op, "blockTables");
        int[] tables = bt.ints(op, "blockTables");
        if (starts.length != numSeqs + 1 || lens.length != numSeqs || bt.rows() != numSeqs
                || starts[0] != 0 || starts[numSeqs] != meta.numTokens()) {
            throw shapes(op, "queryStarts " + shape(meta.queryStarts()) + ", contextLens " + shape(meta.contextLens())
                    + ", blockTables " + bt.shape() + " for numSeqs=" + numSeqs + " numTokens=" + meta.numTokens(),
                    "queryStarts must run from 0 to numTokens over numSeqs + 1 entries");
        }
        int n = meta.numTokens(), maxBlocks = bt.cols(), bs = c.blockSize();
        int[] seqOfRow = new int[n], position = new int[n], firstKey = new int[n];
        int maxContext = 0;
        for (int s = 0; s < numSeqs; s++) {
            int qLen = starts[s + 1] - starts[s], ctx = lens[s];
            if (qLen < 0 || ctx < qLen || ctx > (long) maxBlocks * bs) {
                throw new IllegalArgumentException(op + ": sequence " + s + " has " + qLen + " query rows and context "
                        + ctx + "; need 0 <= rows <= context <= maxBlocksPerSeq (" + maxBlocks + ") x blockSize (" + bs + ")");
            }
            for (int b = 0; b < (ctx + bs - 1) / bs; b++) {
                int block = tables[s * maxBlocks + b];
                if (block < 0 || block >= c.numBlocks()) {
                    throw new IllegalArgumentException(op + ": sequence " + s + " block-table entry " + b + " is " + block
                            + ", outside the cache's " + c.numBlocks() + " blocks");
                }
            }
            for (int i = 0; i < qLen; i++) {
                int row = starts[s] + i, pos = ctx - qLen + i;
                seqOfRow[row] = s;
                position[row] = pos;
                firstKey[row] = meta.slidingWindow() > 0 ? Math.max(0, pos - meta.slidingWindow() + 1) : 0;
                maxContext = Math.max(maxContext, pos - firstKey[row] + 1);
            }
        }
        return new PagedAttention.Plan(seqOfRow, position, firstKey, tables, maxBlocks, maxContext);
    }

    @Override
    public void siluMul(Tensor x, Tensor out) {
        CpuTensor xt = cpu(x, "siluMul", "x"), ot = cpu(out, "siluMul", "out");
        float[] xs = xt.floats("siluMul", "x"), os = ot.floats("siluMul", "out");
        int inner = ot.cols();
        if (xt.rows() != ot.rows() || xt.cols() != 2 * inner) {
            throw shapes("siluMul", "x " + xt.shape() + ", out " + ot.shape(), "need x [n, 2I] and out [n, I]");
        }
        pool.forRange(ot.rows(), Math.max(1, PARALLEL_ELEMENTS / Math.max(1, inner)), (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                for (int j = 0; j < inner; j++) {
                    float a = xs[r * 2 * inner + j];
                    os[r * inner + j] = a / (1f + (float) Math.exp(-a)) * xs[r * 2 * inner + inner + j];
                }
            }
        });
    }

    @Override
    public void gatherRows(Tensor x, Tensor rows, Tensor out) {
        CpuTensor xt = cpu(x, "gatherRows", "x"), it = cpu(rows, "gatherRows", "rows"), ot = cpu(out, "gatherRows", "out");
        float[] xs = xt.floats("gatherRows", "x"), os = ot.floats("gatherRows", "out");
        int[] idx = it.ints("gatherRows", "rows");
        if (it.rows() != 1 || ot.rows() != it.cols() || ot.cols() != xt.cols()) {
            throw shapes("gatherRows", "x " + xt.shape() + ", rows " + it.shape() + ", out " + ot.shape(),
                    "need rows [1, m] and out [m, x.cols]");
        }
        int cols = xt.cols();
        for (int i = 0; i < idx.length; i++) {
            if (idx[i] < 0 || idx[i] >= xt.rows()) {
                throw new IllegalArgumentException("gatherRows: row index " + idx[i] + " at " + i + " is outside x " + xt.shape());
            }
            System.arraycopy(xs, idx[i] * cols, os, i * cols, cols);
        }
    }

    @Override
    public void close() { pool.close(); }

    // ---- helpers ----------------------------------------------------------------------------

    private static CpuTensor cpu(Tensor t, String op, String role) {
        if (t instanceof CpuTensor c) return c;
        throw new IllegalArgumentException(op + ": " + role + " is " + (t == null ? "null" : t.getClass().getName())
                + ", not a tensor of the cpu backend");
    }

    private static CpuWeight cpu(Weight w) {
        if (w instanceof CpuWeight c) return c;
        throw new IllegalArgumentException("weight " + (w == null ? "null" : "'" + w.name() + "' of " + w.getClass().getName())
                + " does not belong to the cpu backend");
    }

    private static CpuKvCache cpu(KvCache k) {
        if (k instanceof CpuKvCache c) return c;
        throw new IllegalArgumentException("KV cache " + k + " does not belong to the cpu backend");
    }

    private static boolean sameShape(Tensor a, Tensor b) { return a.rows() == b.rows() && a.cols() == b.cols(); }

    private static String shape(Tensor t) { return "[" + t.rows() + ", " + t.cols() + "]"; }

    private static IllegalArgumentException shapes(String op, String got, String rule) {
        return new IllegalArgumentException(op + ": shape mismatch: " + got + " (" + rule + ")");
    }

    @Override
    public String toString() { return "CpuBackend(" + pool.threads() + " threads)"; }
}
