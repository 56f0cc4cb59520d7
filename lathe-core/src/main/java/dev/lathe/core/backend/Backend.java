package dev.lathe.core.backend;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;

import java.util.List;
import java.util.Optional;

/**
 * The operations a model is written against. One implementation per device (CPU, CUDA). Every op
 * writes its output tensor completely and reads nothing of it before; shapes are checked and a
 * mismatch is an {@link IllegalArgumentException} naming the op and both shapes. Ops may run
 * asynchronously; {@link #download} waits for everything queued before it.
 *
 * <p>Math is float32 whatever the storage format; activations are F32 unless an op says otherwise.
 */
public interface Backend extends AutoCloseable {
    String name();

    // ---- memory -------------------------------------------------------------------------------

    /**
     * A mark at the end of the work queued so far, for timing ops ({@link Mark#millisTo}). Default: the host's clock
     * now, right for a backend whose ops have finished when they return. Not for use inside {@link #capture}.
     */
    default Mark mark() { return Mark.hostNow(); }

    /** A new, uninitialised {@code [rows, cols]} tensor. */
    Tensor allocate(DType dtype, int rows, int cols);

    /** A new F32 tensor holding {@code data} ({@code rows * cols} values). */
    Tensor upload(float[] data, int rows, int cols);

    /** A new I32 tensor holding {@code data} ({@code rows * cols} values). */
    Tensor upload(int[] data, int rows, int cols);

    /**
     * New I32 tensors, tensor {@code i} of shape {@code [rows[i], cols[i]]} holding {@code data[i]}: what {@link
     * #upload(int[], int, int)} gives for each, where a device backend may pack them into one host-to-device copy
     * (the small per-step arrays of a step: one copy instead of one each). Each tensor is closed on its own.
     */
    default Tensor[] uploadInts(int[][] data, int[] rows, int[] cols) {
        if (rows.length != data.length || cols.length != data.length) {
            throw new IllegalArgumentException("uploadInts: " + data.length + " arrays, " + rows.length + " row counts, "
                    + cols.length + " column counts");
        }
        Tensor[] out = new Tensor[data.length];
        try {
            for (int i = 0; i < data.length; i++) out[i] = upload(data[i], rows[i], cols[i]);
        } catch (RuntimeException e) {
            for (Tensor t : out) if (t != null) t.close();
            throw e;
        }
        return out;
    }

    /** Copies an F32 tensor to the host, after all queued work. */
    float[] download(Tensor t);

    /** Free and total bytes of the device memory a backend allocates from. */
    record Memory(long freeBytes, long totalBytes) {}

    /**
     * The device memory this backend allocates from, now; empty when it allocates from the host (the CPU
     * backend), where the KV cache is sized by its caller.
     */
    default Optional<Memory> memory() { return Optional.empty(); }

    // ---- captured work (CUDA graphs) -----------------------------------------------------------

    /** Work recorded by {@link #capture}, replayed as one unit in the backend's queue. */
    interface Graph extends AutoCloseable {
        /** Queues the recorded work again, over the same tensors. */
        void replay();

        @Override
        void close();
    }

    /** Whether {@link #capture} and {@link #write} are available. */
    default boolean supportsGraphs() { return false; }

    /**
     * Records the work {@code ops} queues, without running it, for later {@link Graph#replay}. The ops must
     * only queue work on tensors that outlive the graph (or that they allocate themselves: those are kept
     * apart for the graph), and must not read anything back to the host. Tensors the ops allocate and return
     * stay valid while the graph lives.
     */
    default Graph capture(Runnable ops) {
        throw new UnsupportedOperationException(name() + " backend: no captured graphs");
    }

    /** Copies {@code data} into the first {@code data.length} values of an I32 tensor, in queue order. */
    default void write(Tensor dst, int[] data) {
        throw new UnsupportedOperationException(name() + " backend: no write into existing tensors");
    }

    /** Copies {@code data} into the first {@code data.length} values of an F32 tensor, in queue order. */
    default void write(Tensor dst, float[] data) {
        throw new UnsupportedOperationException(name() + " backend: no write into existing tensors");
    }

    /** Makes a checkpoint tensor resident (CPU: wraps the mapped bytes, no copy). 1-D becomes [1, n]. */
    Weight load(WeightTensor t);

    /**
     * One weight made of {@code parts} stacked along rows (fused QKV, fused gate/up); all parts have
     * the same dtype and column count.
     */
    Weight loadFused(String name, List<WeightTensor> parts);

    /**
     * A weight of seeded random values, generated where it will live: normal(0, std), or the constant
     * {@code mean} plus normal(0, std) (norm scales). The same (seed, shape, dtype) gives the same values
     * on every backend.
     */
    Weight random(String name, DType dtype, int rows, int cols, long seed, float mean, float std);

    KvCache allocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype);

    // ---- ops --------------------------------------------------------------------------------

    /**
     * {@code out[i, :] = table[ids[i], :]}. ids {@code [1, n]} I32, table {@code [vocab, h]}, out {@code [n, h]}: F32, or
     * the 16-bit {@link #residualFormat} a backend offers.
     */
    void embedding(Weight table, Tensor ids, Tensor out);

    /**
     * RMSNorm over rows of length {@code weight.cols()}: {@code out = x / sqrt(mean(x^2) + eps) * weight}.
     * {@code x} and {@code out} have the same shape and their row length is a multiple of
     * {@code weight.cols()} (so [n, heads * headDim] with a [1, headDim] weight norms each head).
     * {@code out} may be {@code x}. {@code out} is F32, or a 16-bit format {@link #activationFormat} names (then
     * rounded to nearest even, and not {@code x}). {@code x} is F32, or a residual in the {@link #residualFormat} the
     * backend offers.
     */
    void rmsNorm(Tensor x, Weight weight, float eps, Tensor out);

    /**
     * {@code residual += x; out = rmsNorm(residual)}; all {@code [n, h]}. {@code out} may be in a 16-bit format as
     * for {@link #rmsNorm}.
     */
    void addRmsNorm(Tensor residual, Tensor x, Weight weight, float eps, Tensor out);

    /**
     * {@code out = x @ w^T (+ bias)}: x {@code [n, in]}, w {@code [out, in]}, bias {@code [1, out]} or null. x is F32,
     * or in the format {@link #activationFormat} gives for w and n rows; out is F32, or (no bias) in the format
     * {@link #projectionFormat} gives.
     */
    void linear(Tensor x, Weight w, Weight bias, Tensor out);

    /** Copies column ranges of {@code src} into {@code outs} in order; their widths sum to src's. */
    void splitColumns(Tensor src, Tensor... outs);

    /**
     * Rotary embedding in place, HF "rotate half" convention: in every head of width {@code 2 * half},
     * element {@code j} pairs with {@code j + half}. {@code x} is {@code [n, heads * 2 * half]}; cos and
     * sin are {@code [n, half]} F32 (the angle of token i, frequency j).
     */
    void rope(Tensor x, Tensor cos, Tensor sin);

    /**
     * Writes this step's K and V ({@code [n, kvHeads * headDim]}) into the cache at {@code slotMapping}; a
     * slot of -1 marks a padding row, written nowhere.
     */
    void writeKv(KvCache cache, int layer, Tensor k, Tensor v, Tensor slotMapping);

    /**
     * The attention input of one layer in one op: splits {@code qkv} ({@code [n, qWidth + 2 * kvWidth]}: the
     * query heads, then the key heads, then the value heads) into {@code q} ({@code [n, qWidth]}), applies
     * {@link #rope} to the queries and keys and {@link #writeKv writes} keys and values into the cache at
     * {@code slotMapping} (-1 = padding, written nowhere). Equal to those four ops, which this default runs;
     * a backend may fuse them. {@code qkv} is F32, or in the {@link #projectionFormat} of its projection.
     */
    default void ropeWriteKv(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, Tensor slotMapping) {
        int rest = qkv.cols() - q.cols();
        if (qkv.rows() != q.rows() || rest <= 0 || rest % 2 != 0) {
            throw new IllegalArgumentException("ropeWriteKv: qkv is [" + qkv.rows() + ", " + qkv.cols() + "] and q ["
                    + q.rows() + ", " + q.cols() + "]; qkv needs q's rows and q's width plus two equal K and V widths");
        }
        try (Tensor k = allocate(DType.F32, q.rows(), rest / 2); Tensor v = allocate(DType.F32, q.rows(), rest / 2)) {
            splitColumns(qkv, q, k, v);
            rope(q, cos, sin);
            rope(k, cos, sin);
            writeKv(cache, layer, k, v, slotMapping);
        }
    }

    /**
     * Causal paged attention with grouped query heads: {@code q} {@code [n, heads * headDim]} against the
     * cached K/V of {@code layer} (already holding this step's tokens), scaled by {@code scale} before
     * softmax; {@code out} has q's shape, F32 or the 16-bit format {@link #activationFormat} names for the
     * output projection (then rounded to nearest even). See {@link AttentionMetadata} for positions and masking.
     */
    void attention(Tensor q, KvCache cache, int layer, AttentionMetadata meta, float scale, Tensor out);

    /**
     * {@link #ropeWriteKv} then {@link #attention} of the rotated queries, for a layer whose queries and keys have no
     * norms of their own: the same arguments, {@code meta.slotMapping()} the slots. Equal to those two ops, which this
     * default runs; a backend may leave {@code q} unwritten (then its content after the call is unspecified) and
     * rotate the queries inside attention as it reads them from {@code qkv}.
     */
    default void ropeAttention(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, AttentionMetadata meta,
                               float scale, Tensor out) {
        ropeWriteKv(qkv, q, cos, sin, cache, layer, meta.slotMapping());
        attention(q, cache, layer, meta, scale, out);
    }

    /** {@code out[i, j] = silu(x[i, j]) * x[i, j + I]}: x {@code [n, 2I]}, out {@code [n, I]}. */
    void siluMul(Tensor x, Tensor out);

    /**
     * The gated MLP: {@code out = linear(linearSiluMul(h, gateUp, gateUpBias), down, downBias)}, h {@code [n,
     * in]}, out {@code [n, out]}. Equal to those two ops, which this default runs; a backend may keep the
     * {@code [n, I]} activation in another form between them.
     */
    default void mlp(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor out) {
        if (gateUp.rows() % 2 != 0 || down.cols() != gateUp.rows() / 2) {
            throw new IllegalArgumentException("mlp: gate/up weight is [" + gateUp.rows() + ", " + gateUp.cols()
                    + "] and down [" + down.rows() + ", " + down.cols() + "]; down needs as many columns as half of gate/up's rows");
        }
        try (Tensor act = allocate(DType.F32, h.rows(), down.cols())) {
            linearSiluMul(h, gateUp, gateUpBias, act);
            linear(act, down, downBias, out);
        }
    }

    /**
     * The gated MLP input in one op: {@link #linear} of x by the stacked gate and up weights ({@code w} {@code
     * [2I, in]}, bias {@code [1, 2I]} or null), then {@link #siluMul} into {@code out} ({@code [n, I]}). Equal
     * to those two ops, which this default runs; a backend may fuse them.
     */
    default void linearSiluMul(Tensor x, Weight w, Weight bias, Tensor out) {
        if (w.rows() != 2 * out.cols() || out.rows() != x.rows()) {
            throw new IllegalArgumentException("linearSiluMul: w is [" + w.rows() + ", " + w.cols() + "], x [" + x.rows()
                    + ", " + x.cols() + "] and out [" + out.rows() + ", " + out.cols() + "]; need w [2I, in] and out [n, I]");
        }
        try (Tensor gateUp = allocate(DType.F32, x.rows(), w.rows())) {
            linear(x, w, bias, gateUp);
            siluMul(gateUp, out);
        }
    }

    /**
     * {@code out[i, :] = x[rows[i], :]}: rows {@code [1, m]} I32, out {@code [m, cols]} F32; x is F32, or a 16-bit
     * format this backend's ops write (its values widened).
     */
    void gatherRows(Tensor x, Tensor rows, Tensor out);

    /**
     * The format in which {@link #linear} (and {@link #linearSiluMul}, {@link #mlp}) take an x of {@code rows} rows
     * for weight {@code w} with no conversion, and which {@link #rmsNorm} and {@link #addRmsNorm} may write their
     * out in: F32 (this default, always accepted), or a 16-bit format where the backend would round float32
     * activations to it before the product anyway, so that the norm's output is the same numbers either way.
     */
    default DType activationFormat(Weight w, int rows) { return DType.F32; }

    /**
     * The format in which {@link #linear} may write, with no bias, the product of weight {@code w} over {@code rows}
     * rows when only {@link #ropeWriteKv} reads it back (the fused qkv projection): F32 (this default, always
     * accepted), or the weight's 16-bit format, where the product is rounded to it once (the cache stores K and V in
     * such a format anyway) for half the bytes written and read.
     */
    default DType projectionFormat(Weight w, int rows) { return DType.F32; }

    /**
     * Whether {@link #linearAdd} (with weight {@code w}) and {@link #mlpAdd} (with {@code w} as gate/up or down) are
     * available for a step of {@code rows} rows, x taken in {@link #activationFormat}. Default false.
     */
    default boolean addsIntoResidual(Weight w, int rows) { return false; }

    /**
     * The format in which the model may hold the residual stream of a step of {@code rows} rows whose projections
     * {@link #addsIntoResidual} (w: the o projection): F32 (this default), or the weight's 16-bit format, where
     * {@link #embedding} writes the residual, {@link #linearAdd} and {@link #mlpAdd} (with no bias) add into it with
     * one rounding of the sum, and {@link #rmsNorm} reads it. That changes the numbers: the residual is rounded after
     * every add, as 16-bit inference stacks do.
     */
    default DType residualFormat(Weight w, int rows) { return DType.F32; }

    /**
     * {@code acc += x @ w^T (+ bias)} for an F32 {@code acc} {@code [n, out]}: the same numbers as {@link #linear} into
     * a float32 tensor added to acc, where {@link #addsIntoResidual} allows it (a backend may add inside the product);
     * or, with no bias, for an acc in the 16-bit {@link #residualFormat} of w, the sum rounded once to that format.
     */
    default void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) {
        throw new UnsupportedOperationException(name() + " backend: no linearAdd (see addsIntoResidual)");
    }

    /** {@code acc += mlp(h, ...)} for an F32 {@code acc} (or one in {@link #residualFormat} of down), as {@link #linearAdd} is to {@link #linear}. */
    default void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
        throw new UnsupportedOperationException(name() + " backend: no mlpAdd (see addsIntoResidual)");
    }

    /** Whether {@link #sampleRows} draws tokens where the logits are. */
    default boolean supportsSampling() { return false; }

    /**
     * Draws a token for each row {@code r} of {@code logits} ({@code [rows, vocab]} F32) that has a {@code
     * specs[r]}, after all queued work, as {@code Sampler.sample(row, spec)} does; rows without a spec get
     * {@link #NOT_SAMPLED}. A row that holds a NaN gets -1, a row of only -infinity -2, a row with +infinity
     * -3. Only backends that {@link #supportsSampling} implement it.
     */
    default int[] sampleRows(Tensor logits, SampleSpec[] specs) {
        throw new UnsupportedOperationException(name() + " backend does not sample on its own; take the rows and sample them");
    }

    /** What {@link #sampleRows} returns for a row it was not asked to sample. */
    int NOT_SAMPLED = Integer.MIN_VALUE;

    /**
     * For each row of an F32 {@code [rows, cols]} tensor, the column of its largest value (the lowest on
     * ties; 0 for a row of -inf), or -1 when the row holds a NaN; after all queued work. Greedy decoding
     * needs only this, so a backend with its memory elsewhere (a GPU) can return {@code rows} ints
     * instead of the whole tensor.
     */
    default int[] argmaxRows(Tensor x) {
        float[] v = download(x);
        int rows = x.rows(), cols = x.cols();
        int[] out = new int[rows];
        for (int r = 0; r < rows; r++) {
            int best = 0;
            float max = Float.NEGATIVE_INFINITY;
            for (int c = 0, base = r * cols; c < cols; c++) {
                float f = v[base + c];
                if (f != f) {
                    best = -1;
                    break;
                }
                if (f > max) {
                    max = f;
                    best = c;
                }
            }
            out[r] = best;
        }
        return out;
    }

    /**
     * Whether this backend keeps a step's token picks on the device ({@link #argmaxRowsAsync}) and feeds them into
     * the next step's inputs there ({@link #forwardTokens}), so that an engine may launch step N + 1 before step
     * N's tokens have reached the host.
     */
    default boolean supportsAsyncSteps() { return false; }

    /** A step's token picks: on the device ({@link #tokens}, {@code [1, rows]} I32) and, once awaited, on the host. */
    interface PendingTokens extends AutoCloseable {
        /** The picks where the backend keeps them, for {@link #forwardTokens}; valid until {@link #close}. */
        Tensor tokens();

        /** The picks on the host, as {@link #argmaxRows} gives them; waits for the device. */
        int[] await();

        @Override
        void close();
    }

    /**
     * As {@link #argmaxRows}, with the picks left on the device and their copy to the host queued, not waited
     * for. This default computes them at once.
     */
    default PendingTokens argmaxRowsAsync(Tensor x) {
        int[] ids = argmaxRows(x);
        Tensor t = upload(ids, 1, ids.length);
        return new PendingTokens() {
            @Override public Tensor tokens() { return t; }
            @Override public int[] await() { return ids.clone(); }
            @Override public void close() { t.close(); }
        };
    }

    /**
     * {@code ids[dstRows[i]] = tokens[srcRows[i]]} for I32 tensors {@code [1, n]}, after all queued work: a step's
     * input tokens taken from the previous step's picks without a trip through the host. A negative pick (a row
     * that held a NaN) becomes token 0, so that one bad row cannot fail the step of every other sequence; its own
     * sequence ends when the engine reads the pick. Only backends that {@link #supportsAsyncSteps} implement it.
     */
    default void forwardTokens(Tensor tokens, int[] srcRows, Tensor ids, int[] dstRows) {
        throw new UnsupportedOperationException(name() + " backend: no token forwarding between steps");
    }

    @Override
    void close();
}
