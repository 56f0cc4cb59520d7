package dev.lathe.core.config;

import java.util.List;

/**
 * The shape of a decoder-only transformer of the Llama family, as read from HF {@code config.json}
 * (or built by a synthetic preset). Derived sizes are methods, never stored twice.
 *
 * @param architecture        the HF {@code architectures[0]} string, e.g. "LlamaForCausalLM"
 * @param attentionBias       q/k/v projections carry a bias (Qwen2 always; Llama and Qwen3 when
 *                            attention_bias is set, and then o_proj too: see {@link #outputBias()})
 * @param mlpBias             gate/up/down projections carry a bias (Llama's mlp_bias)
 * @param qkNorm              per-head RMSNorm on q and k before RoPE (Qwen3)
 * @param slidingWindow       attention window in tokens, 0 when none (Mistral; Qwen with use_sliding_window)
 * @param eosTokenIds         end-of-sequence ids, empty when the config names none
 * @param dtype               the checkpoint's {@code torch_dtype} (transformers 5: {@code dtype}), normalised
 *                            to "bfloat16", "float16" or "float32"; null when the config does not say
 */
public record ModelConfig(
        String architecture,
        String modelType,
        int vocabSize,
        int hiddenSize,
        int intermediateSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int maxPositionEmbeddings,
        double rmsNormEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        boolean tieWordEmbeddings,
        boolean attentionBias,
        boolean mlpBias,
        boolean qkNorm,
        int slidingWindow,
        Integer bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) {

    public int qSize() { return numHeads * headDim; }

    public int kvSize() { return numKvHeads * headDim; }

    /** Rows of the fused QKV weight: q, then k, then v. */
    public int qkvSize() { return qSize() + 2 * kvSize(); }

    public int queriesPerKvHead() { return numHeads / numKvHeads; }

    /**
     * o_proj carries a bias. In transformers, Llama's and Qwen3's attention_bias puts a bias on q, k, v
     * and o alike; Qwen2's fixed q/k/v bias leaves o_proj without one.
     */
    public boolean outputBias() { return attentionBias && !"Qwen2ForCausalLM".equals(architecture); }

    /** Parameters as HF counts them (a tied LM head counted once). */
    public long parameterCount() {
        long h = hiddenSize;
        long attn = h * qkvSize() + (long) qSize() * h + (attentionBias ? qkvSize() : 0) + (outputBias() ? h : 0)
                + (qkNorm ? 2L * headDim : 0);
        long mlp = 3L * h * intermediateSize + (mlpBias ? 2L * intermediateSize + h : 0);
        long norms = 2 * h;
        long perLayer = attn + mlp + norms;
        long embed = (long) vocabSize * h;
        return numLayers * perLayer + embed + h + (tieWordEmbeddings ? 0 : embed);
    }
}
