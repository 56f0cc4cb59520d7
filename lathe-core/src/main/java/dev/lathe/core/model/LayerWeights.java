package dev.lathe.core.model;

import dev.lathe.core.backend.Weight;

import java.util.stream.Stream;

/**
 * One decoder layer's weights, fused at load. Shapes (HF layout, [out, in]):
 * qkv {@code [qSize + 2 * kvSize, hidden]} (q rows, then k, then v); qkvBias {@code [1, qSize + 2 * kvSize]}
 * or null; qNorm/kNorm {@code [1, headDim]} or null; o {@code [hidden, qSize]};
 * gateUp {@code [2 * intermediate, hidden]} (gate rows, then up); down {@code [hidden, intermediate]}.
 * oBias {@code [1, hidden]}, gateUpBias {@code [1, 2 * intermediate]}, downBias {@code [1, hidden]}: null
 * unless the config has attention_bias (Llama, Qwen3) or mlp_bias.
 */
public record LayerWeights(Weight inputNorm, Weight qkv, Weight qkvBias, Weight qNorm, Weight kNorm, Weight o,
                           Weight oBias, Weight postAttentionNorm, Weight gateUp, Weight gateUpBias, Weight down,
                           Weight downBias) implements AutoCloseable {
    @Override
    public void close() {
        Stream.of(inputNorm, qkv, qkvBias, qNorm, kNorm, o, oBias, postAttentionNorm, gateUp, gateUpBias, down, downBias)
                .filter(w -> w != null).forEach(Weight::close);
    }
}
