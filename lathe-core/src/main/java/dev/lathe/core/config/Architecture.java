package dev.lathe.core.config;

import java.util.List;

/**
 * What differs between the supported {@code architectures[0]} values: the defaults their transformers
 * config classes apply to fields a config.json leaves out, and which optional features they read.
 * Defaults are those of transformers' {@code LlamaConfig}, {@code MistralConfig}, {@code Qwen2Config}
 * and {@code Qwen3Config}.
 *
 * @param kvHeadsIfMissing  num_key_value_heads when absent; null means "= num_attention_heads"
 *                          (an explicit null always means that)
 * @param headDimIfMissing  head_dim when absent; null means hidden_size / num_attention_heads
 * @param qkvBias           q/k/v always carry a bias and attention_bias is not read (Qwen2)
 * @param readsAttentionBias the config's attention_bias field applies (to q, k, v and o)
 */
enum Architecture {
    LLAMA("LlamaForCausalLM", "llama", 32000, 4096, 11008, 32, 32, null, null, 2048, 1e-6, 1, List.of(2),
            false, true, true, false, Sliding.NONE),
    MISTRAL("MistralForCausalLM", "mistral", 32000, 4096, 14336, 32, 32, 8, null, 4096 * 32, 1e-6, 1, List.of(2),
            false, false, false, false, Sliding.MISTRAL),
    QWEN2("Qwen2ForCausalLM", "qwen2", 151936, 4096, 22016, 32, 32, 32, null, 32768, 1e-6, null, List.of(),
            true, false, false, false, Sliding.QWEN),
    QWEN3("Qwen3ForCausalLM", "qwen3", 151936, 4096, 22016, 32, 32, 32, 128, 32768, 1e-6, null, List.of(),
            false, true, false, true, Sliding.QWEN);

    /** How a family declares sliding-window attention. */
    enum Sliding {
        NONE,
        /** {@code sliding_window}: missing means 4096, null means none. */
        MISTRAL,
        /** {@code use_sliding_window} + {@code sliding_window} + {@code max_window_layers} or {@code layer_types}. */
        QWEN
    }

    final String hfName;
    final String modelType;
    final int vocabSize, hiddenSize, intermediateSize, numLayers, numHeads;
    final Integer kvHeadsIfMissing, headDimIfMissing;
    final int maxPositionEmbeddings;
    final double rmsNormEps;
    final Integer bosTokenId;
    final List<Integer> eosTokenIds;
    final boolean qkvBias, readsAttentionBias, readsMlpBias, qkNorm;
    final Sliding sliding;

    Architecture(String hfName, String modelType, int vocabSize, int hiddenSize, int intermediateSize, int numLayers,
                 int numHeads, Integer kvHeadsIfMissing, Integer headDimIfMissing, int maxPositionEmbeddings,
                 double rmsNormEps, Integer bosTokenId, List<Integer> eosTokenIds, boolean qkvBias,
                 boolean readsAttentionBias, boolean readsMlpBias, boolean qkNorm, Sliding sliding) {
        this.hfName = hfName;
        this.modelType = modelType;
        this.vocabSize = vocabSize;
        this.hiddenSize = hiddenSize;
        this.intermediateSize = intermediateSize;
        this.numLayers = numLayers;
        this.numHeads = numHeads;
        this.kvHeadsIfMissing = kvHeadsIfMissing;
        this.headDimIfMissing = headDimIfMissing;
        this.maxPositionEmbeddings = maxPositionEmbeddings;
        this.rmsNormEps = rmsNormEps;
        this.bosTokenId = bosTokenId;
        this.eosTokenIds = eosTokenIds;
        this.qkvBias = qkvBias;
        this.readsAttentionBias = readsAttentionBias;
        this.readsMlpBias = readsMlpBias;
        this.qkNorm = qkNorm;
        this.sliding = sliding;
    }

    static Architecture of(String hfName) {
        for (Architecture a : values()) {
            if (a.hfName.equals(hfName)) return a;
        }
        return null;
    }

    static List<String> supported() {
        return java.util.Arrays.stream(values()).map(a -> a.hfName).toList();
    }
}
