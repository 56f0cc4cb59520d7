package dev.lathe.core.model;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;

import java.util.List;

/**
 * The Llama family (Llama 2/3/3.1/3.2, Mistral, Qwen2, Qwen3), written once against the {@link Backend}
 * ops. Differences between members are config flags: QKV bias (Qwen2), q/k RMSNorm (Qwen3), sliding
 * window (Mistral), tied embeddings, RoPE scaling.
 *
 * <p>Per layer, token-major ({@code n} = tokens of the step):
 * <pre>
 *   h = norm(residual)                    [n, hidden]
 *   q, k, v = split(h @ Wqkv^T + b)       [n, qSize], [n, kvSize], [n, kvSize]
 *   q, k = qkNorm(q, k)                   (Qwen3: per head)
 *   q, k = rope(q, k)
 *   cache[layer] <- k, v                  (at the slot mapping)
 *   a = attention(q, cache[layer])        [n, qSize]
 *   residual += a @ Wo^T;  h = norm(residual)
 *   residual += down(silu(gate(h)) * up(h))
 * </pre>
 */
public final class LlamaModel implements AutoCloseable {
    /**
     * System property, read when the model is built: {@code true} lets the o projection and the MLP add their products into
     * the residual stream inside the product ({@link Backend#linearAdd}, {@link Backend#mlpAdd}) where the backend
     * {@link Backend#addsIntoResidual can}, and the norms after them only normalize. The same numbers as the add in
     * {@link Backend#addRmsNorm}, with the float32 product neither written nor read back. Default true: on an H100,
     * 2048/128 x 300 ran at 1,740.7 against 1,718.3 tok/s and 1,734.0 against 1,717.6 in two calls; {@code false}
     * keeps the adds in the norms.
     */
    public static final String RESIDUAL_ADD_PROPERTY = "lathe.model.residualAdd";
    /**
     * System property, read when the model is built: {@code true} runs the last layer on the rows the step wants
     * logits for only, where the step gives their attention ({@link StepInput#logitAttention}: ModelRunner does when
     * each sequence's one logit row is its last and there are fewer logit rows than rows). Every row's keys and values
     * still go into the cache; the other rows' attention, o projection, MLP and norms fed nothing. The logit rows take
     * the float32 path of a decode step (the step's residual widened), so their logits differ from the whole-layer
     * computation by rounding. Default true: a 2048-token prefill skips ~1 ms of its last layer's work on an H100;
     * {@code false} computes every row.
     */
    public static final String LAST_LAYER_LOGIT_ROWS_PROPERTY = "lathe.model.lastLayerLogitRows";

    private final ModelConfig config;
    private final Backend backend;
    private final Weight embedding;   // [vocab, hidden]
    private final List<LayerWeights> layers;
    private final Weight finalNorm;   // [1, hidden]
    private final Weight lmHead;      // [vocab, hidden]; the embedding itself when tied
    private final float eps;
    private final float attentionScale;
    private final boolean residualAdd = Boolean.parseBoolean(System.getProperty(RESIDUAL_ADD_PROPERTY, "true"));
    private final boolean lastLayerLogitRows = Boolean.parseBoolean(System.getProperty(LAST_LAYER_LOGIT_ROWS_PROPERTY, "true"));
    /** No layer norms q and k or adds a qkv bias: the qkv product feeds ropeWriteKv alone (see Backend#projectionFormat). */
    private final boolean qkvToRopeOnly;
    /** No layer adds an o or down bias: the residual may be held in a 16-bit format (see Backend#residualFormat). */
    private final boolean noResidualBias;

    LlamaModel(ModelConfig config, Backend backend, Weight embedding, List<LayerWeights> layers,
               Weight finalNorm, Weight lmHead) {
        this.config = config;
        this.backend = backend;
        this.embedding = embedding;
        this.layers = List.copyOf(layers);
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.eps = (float) config.rmsNormEps();
        this.attentionScale = (float) (1.0 / Math.sqrt(config.headDim()));
        this.qkvToRopeOnly = this.layers.stream().allMatch(w -> w.qNorm() == null && w.qkvBias() == null);
        this.noResidualBias = this.layers.stream().allMatch(w -> w.oBias() == null && w.downBias() == null);
    }

    public ModelConfig config() { return config; }

    public Backend backend() { return backend; }

    /** The dtype the weights are held in (that of the embedding table). */
    public DType weightDtype() { return embedding.dtype(); }

    /**
     * Runs one step over the packed new tokens of all scheduled sequences, writing their K/V into
     * {@code cache}, and returns logits {@code [numLogitRows, vocab]} for the rows {@code in.logitRows()} names.
     */
    public Tensor forward(StepInput in, KvCache cache) {
        return forward(in, cache, null);
    }

    /**
     * As {@link #forward(StepInput, KvCache)}, writing the logits into {@code logitsOut} ({@code [numLogitRows,
     * vocab]} F32, returned) when it is not null, so that recorded steps of several shapes can share one.
     */
    public Tensor forward(StepInput in, KvCache cache, Tensor logitsOut) {
        int n = in.numTokens();
        int hidden = config.hiddenSize();
        var attn = in.attention();
        // where the qkv product feeds only ropeWriteKv: the backend's projection format for this step (the same for
        // every layer), else float32
        DType projection = qkvToRopeOnly ? backend.projectionFormat(layers.getFirst().qkv(), n) : DType.F32;
        DType qkvFormat = projection != DType.F32
                && layers.stream().allMatch(w -> backend.projectionFormat(w.qkv(), n) == projection) ? projection : DType.F32;
        int m = in.logitRows().cols();
        if (logitsOut != null && (logitsOut.rows() != m || logitsOut.cols() != config.vocabSize())) {
            throw new IllegalArgumentException("forward: logits tensor is [" + logitsOut.rows() + ", " + logitsOut.cols()
                    + "], the step needs [" + m + ", " + config.vocabSize() + "]");
        }
        // the last layer on the logit rows alone (see logitRowsTail)
        boolean logitRowsOnly = lastLayerLogitRows && in.logitAttention() != null;
        try (Tensor hLogit = backend.allocate(DType.F32, m, hidden);
             Tensor h = backend.allocate(DType.F32, n, hidden);
             Tensor qkv = backend.allocate(qkvFormat, n, config.qkvSize());
             Tensor q = backend.allocate(DType.F32, n, config.qSize());
             Tensor k = backend.allocate(DType.F32, n, config.kvSize());
             Tensor v = backend.allocate(DType.F32, n, config.kvSize())) {

            // the norms' outputs feed the projections: in the backend's GEMM input format where it has one for
            // this step (activationFormat), else float32; the final norm's output feeds the LM head in float32
            LayerWeights first = layers.getFirst();
            DType actFormat = backend.activationFormat(first.qkv(), n);
            // (x feeds only the qkv projection and the MLP; q/k norms work on the float32 projection output)
            boolean direct = actFormat != DType.F32 && layers.stream().allMatch(w ->
                    backend.activationFormat(w.qkv(), n) == actFormat && backend.activationFormat(w.gateUp(), n) == actFormat);
            // attention writes the o projection's input in that format too, where every layer's takes it
            DType oFormat = backend.activationFormat(first.o(), n);
            boolean oDirect = oFormat != DType.F32 && layers.stream().allMatch(w -> backend.activationFormat(w.o(), n) == oFormat);
            // the o projection and the MLP add their products into the residual inside the GEMM where the backend can
            // and RESIDUAL_ADD_PROPERTY asks for it; the norms then only normalize
            boolean addInGemm = residualAdd && layers.stream().allMatch(w -> backend.addsIntoResidual(w.o(), n)
                    && backend.addsIntoResidual(w.gateUp(), n) && backend.addsIntoResidual(w.down(), n));
            // the residual stream in the backend's 16-bit residual format where every layer adds into it in the GEMM
            // with no bias; the embedding writes it and the norms read it
            DType resFormat = addInGemm && noResidualBias ? backend.residualFormat(first.o(), n) : DType.F32;
            boolean res16 = resFormat != DType.F32 && layers.stream().allMatch(w ->
                    backend.residualFormat(w.o(), n) == resFormat && backend.residualFormat(w.down(), n) == resFormat);
            try (Tensor residual = backend.allocate(res16 ? resFormat : DType.F32, n, hidden);
                 Tensor proj = addInGemm ? null : backend.allocate(DType.F32, n, hidden);  // the products, where norms add them
                 Tensor hAct = direct ? backend.allocate(actFormat, n, hidden) : null;
                 Tensor attnOut = backend.allocate(oDirect ? oFormat : DType.F32, n, config.qSize())) {
                Tensor x = direct ? hAct : h;
                backend.embedding(embedding, in.tokenIds(), residual);
                backend.rmsNorm(residual, first.inputNorm(), eps, x);
                for (int l = 0; l < layers.size(); l++) {
                    LayerWeights w = layers.get(l);
                    backend.linear(x, w.qkv(), w.qkvBias(), qkv);
                    boolean last = l + 1 == layers.size();
                    // the last layer cut to the logit rows writes every row's keys and values, and attends with those
                    // rows alone (logitRowsTail)
                    boolean logitAttention = last && logitRowsOnly;
                    if (w.qNorm() == null) {
                        if (logitAttention) backend.ropeWriteKv(qkv, q, in.cos(), in.sin(), cache, l, attn.slotMapping());
                        else backend.ropeAttention(qkv, q, in.cos(), in.sin(), cache, l, attn, attentionScale, attnOut);
                    } else {
                        backend.splitColumns(qkv, q, k, v);
                        backend.rmsNorm(q, w.qNorm(), eps, q);
                        backend.rmsNorm(k, w.kNorm(), eps, k);
                        backend.rope(q, in.cos(), in.sin());
                        backend.rope(k, in.cos(), in.sin());
                        backend.writeKv(cache, l, k, v, attn.slotMapping());
                        if (!logitAttention) backend.attention(q, cache, l, attn, attentionScale, attnOut);
                    }
                    if (logitAttention) {
                        logitRowsTail(w, l, q, residual, in, cache, hLogit);
                        break;
                    }
                    Weight nextNorm = last ? finalNorm : layers.get(l + 1).inputNorm();
                    if (addInGemm) {
                        backend.linearAdd(attnOut, w.o(), w.oBias(), residual);
                        backend.rmsNorm(residual, w.postAttentionNorm(), eps, x);
                        backend.mlpAdd(x, w.gateUp(), w.gateUpBias(), w.down(), w.downBias(), residual);
                        backend.rmsNorm(residual, nextNorm, eps, last ? h : x);
                    } else {
                        backend.linear(attnOut, w.o(), w.oBias(), proj);
                        backend.addRmsNorm(residual, proj, w.postAttentionNorm(), eps, x);
                        backend.mlp(x, w.gateUp(), w.gateUpBias(), w.down(), w.downBias(), proj);
                        backend.addRmsNorm(residual, proj, nextNorm, eps, last ? h : x);
                    }
                }
            }
            Tensor logits = logitsOut != null ? logitsOut : backend.allocate(DType.F32, m, config.vocabSize());
            try {
                if (!logitRowsOnly) backend.gatherRows(h, in.logitRows(), hLogit);
                backend.linear(hLogit, lmHead, null, logits);
            } catch (RuntimeException e) {
                if (logitsOut == null) logits.close();
                throw e;
            }
            return logits;
        }
    }

    /**
     * The last layer ({@code layer}) after its keys and values are written, for the logit rows alone
     * ({@link #LAST_LAYER_LOGIT_ROWS_PROPERTY}): those rows of the rotated queries {@code q} attend by themselves
     * ({@link StepInput#logitAttention}); their attention output and residual rows, in float32, go through the o
     * projection, the MLP and their norms; the final norm's output into {@code out} ({@code [logit rows, hidden]} F32).
     */
    private void logitRowsTail(LayerWeights w, int layer, Tensor q, Tensor residual, StepInput in, KvCache cache, Tensor out) {
        Tensor logitRows = in.logitRows();
        int m = logitRows.cols(), hidden = config.hiddenSize();
        try (Tensor qm = backend.allocate(DType.F32, m, q.cols()); Tensor a = backend.allocate(DType.F32, m, q.cols());
             Tensor r = backend.allocate(DType.F32, m, hidden); Tensor proj = backend.allocate(DType.F32, m, hidden);
             Tensor x = backend.allocate(DType.F32, m, hidden)) {
            backend.gatherRows(q, logitRows, qm);
            backend.attention(qm, cache, layer, in.logitAttention(), attentionScale, a);
            backend.gatherRows(residual, logitRows, r);
            backend.linear(a, w.o(), w.oBias(), proj);
            backend.addRmsNorm(r, proj, w.postAttentionNorm(), eps, x);
            backend.mlp(x, w.gateUp(), w.gateUpBias(), w.down(), w.downBias(), proj);
            backend.addRmsNorm(r, proj, finalNorm, eps, out);
        }
    }

    @Override
    public void close() {
        layers.forEach(LayerWeights::close);
        embedding.close();
        finalNorm.close();
        if (lmHead != embedding) lmHead.close();
    }
}
