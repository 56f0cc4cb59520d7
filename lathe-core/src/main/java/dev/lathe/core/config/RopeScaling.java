package dev.lathe.core.config;

/**
 * HF {@code rope_scaling}. {@code type} is NONE when the config has none.
 * LLAMA3 uses factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings;
 * LINEAR uses factor; DYNAMIC (NTK) uses factor and the model's max_position_embeddings.
 */
public record RopeScaling(Type type, double factor, double lowFreqFactor, double highFreqFactor,
                          int originalMaxPositionEmbeddings) {
    public enum Type { NONE, LINEAR, DYNAMIC, LLAMA3 }

    public static final RopeScaling NONE = new RopeScaling(Type.NONE, 1.0, 0, 0, 0);
}
