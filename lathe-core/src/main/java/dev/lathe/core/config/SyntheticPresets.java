package dev.lathe.core.config;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Model shapes for {@code synthetic:<preset>}: the published configs of well-known checkpoints (shapes,
 * RoPE, token ids), so that a model of exactly that size can be built from seeded random weights.
 */
public final class SyntheticPresets {
    private static final RopeScaling LLAMA_31 = new RopeScaling(RopeScaling.Type.LLAMA3, 8.0, 1.0, 4.0, 8192);
    private static final RopeScaling LLAMA_32 = new RopeScaling(RopeScaling.Type.LLAMA3, 32.0, 1.0, 4.0, 8192);

    private static final Map<String, ModelConfig> PRESETS = new LinkedHashMap<>();

    static {
        // A few-layer Llama for tests and smoke runs: [vocab 512, hidden 128], 4 heads of 32, 2 KV heads.
        put("tiny", llama(512, 128, 384, 2, 4, 2, 32, 2048, 1e-5, 10_000, RopeScaling.NONE, false, 1, List.of(2)));
        // meta-llama/Llama-2-7b-hf
        put("llama-2-7b", llama(32000, 4096, 11008, 32, 32, 32, 128, 4096, 1e-5, 10_000, RopeScaling.NONE, false,
                1, List.of(2)));
        // meta-llama/Meta-Llama-3-8B
        put("llama-3-8b", llama(128256, 4096, 14336, 32, 32, 8, 128, 8192, 1e-5, 500_000, RopeScaling.NONE, false,
                128000, List.of(128001)));
        // meta-llama/Meta-Llama-3-70B
        put("llama-3-70b", llama(128256, 8192, 28672, 80, 64, 8, 128, 8192, 1e-5, 500_000, RopeScaling.NONE, false,
                128000, List.of(128001)));
        // meta-llama/Llama-3.1-8B
        put("llama-3.1-8b", llama(128256, 4096, 14336, 32, 32, 8, 128, 131072, 1e-5, 500_000, LLAMA_31, false,
                128000, List.of(128001)));
        // meta-llama/Llama-3.2-1B
        put("llama-3.2-1b", llama(128256, 2048, 8192, 16, 32, 8, 64, 131072, 1e-5, 500_000, LLAMA_32, true,
                128000, List.of(128001)));
        // Qwen/Qwen2.5-7B
        put("qwen2.5-7b", new ModelConfig("Qwen2ForCausalLM", "qwen2", 152064, 3584, 18944, 28, 28, 4, 128, 131072,
                1e-6, 1_000_000, RopeScaling.NONE, false, true, false, false, 0, 151643, List.of(151643), "bfloat16"));
        // Qwen/Qwen3-8B
        put("qwen3-8b", new ModelConfig("Qwen3ForCausalLM", "qwen3", 151936, 4096, 12288, 36, 32, 8, 128, 40960,
                1e-6, 1_000_000, RopeScaling.NONE, false, false, false, true, 0, 151643, List.of(151645), "bfloat16"));
        // mistralai/Mistral-7B-v0.1 (4096-token sliding window)
        put("mistral-7b", new ModelConfig("MistralForCausalLM", "mistral", 32000, 4096, 14336, 32, 32, 8, 128, 32768,
                1e-5, 10_000, RopeScaling.NONE, false, false, false, false, 4096, 1, List.of(2), "bfloat16"));
        // mistralai/Mistral-7B-Instruct-v0.3
        put("mistral-7b-v0.3", new ModelConfig("MistralForCausalLM", "mistral", 32768, 4096, 14336, 32, 32, 8, 128,
                32768, 1e-5, 1_000_000, RopeScaling.NONE, false, false, false, false, 0, 1, List.of(2), "bfloat16"));
    }

    private SyntheticPresets() {}

    /** The preset's shape, or an error that lists the presets. */
    public static ModelConfig get(String preset) {
        ModelConfig c = PRESETS.get(preset);
        if (c == null) {
            throw new ConfigException("unknown synthetic preset '" + preset + "' (known: "
                    + String.join(", ", PRESETS.keySet()) + ")");
        }
        return c;
    }

    public static Set<String> names() { return PRESETS.keySet(); }

    private static void put(String name, ModelConfig c) { PRESETS.put(name, c); }

    private static ModelConfig llama(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads,
                                     int headDim, int maxPositions, double eps, double theta, RopeScaling rope,
                                     boolean tie, int bos, List<Integer> eos) {
        return new ModelConfig("LlamaForCausalLM", "llama", vocab, hidden, intermediate, layers, heads, kvHeads,
                headDim, maxPositions, eps, theta, rope, tie, false, false, false, 0, bos, eos, "bfloat16");
    }
}
