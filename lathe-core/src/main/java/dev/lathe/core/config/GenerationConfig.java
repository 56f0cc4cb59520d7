package dev.lathe.core.config;

import java.util.List;

/**
 * HF {@code generation_config.json}: the model's own defaults. A missing value is null (or empty),
 * so a caller can tell "not set" from a set value.
 */
public record GenerationConfig(List<Integer> eosTokenIds, Integer bosTokenId, Integer padTokenId,
                               Boolean doSample, Double temperature, Double topP, Integer topK,
                               Double minP, Double repetitionPenalty, Integer maxNewTokens) {
    public static final GenerationConfig EMPTY =
            new GenerationConfig(List.of(), null, null, null, null, null, null, null, null, null);
}
