package dev.lathe.core.model;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Model families by the HF {@code architectures} string. All supported ones share {@link LlamaModel}. */
public final class ModelRegistry {
    private static final Map<String, String> FAMILIES = new TreeMap<>(Map.of(
            "LlamaForCausalLM", "llama",
            "MistralForCausalLM", "llama",
            "Qwen2ForCausalLM", "llama",
            "Qwen3ForCausalLM", "llama"));

    private ModelRegistry() {}

    public static List<String> supportedArchitectures() { return List.copyOf(FAMILIES.keySet()); }

    /** The family of an architecture, or an error that lists the supported ones. */
    public static String family(String architecture) {
        String f = FAMILIES.get(architecture);
        if (f == null) {
            throw new IllegalArgumentException("unsupported architecture '" + architecture + "'; Lathe supports "
                    + String.join(", ", FAMILIES.keySet()));
        }
        return f;
    }
}
