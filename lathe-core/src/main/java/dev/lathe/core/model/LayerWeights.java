package dev.lathe.core.model;

import dev.lathe.core.backend.Weight;

import java.util.stream.Stream;

/**
 * One decoder layer's weights, fused at load. Shapes (HF layout, [out, in]):
 * qkv {@code [qSize + 2 * kvSize, hidden]} (q rows, then k, then v); qkvBias {@code [1, qSize + 2 * kvSize]}
 * or null; qNorm/kNorm {@code [1, headDim]} or null; o {@code [hidden, qSize]};
 * gateUp {@code [2 * intermediate, hidden]} (gate rows, then up); down {@code [hidden, intermediate]}.
 */
public record LayerWeights(Weight inputNorm, Weight qkv, Weight qkvBias, Weight qNorm, Weight kNorm, Weight o,
                           Weight postAttentionNorm, Weight gateUp, Weight down) implements AutoCloseable {
    @Override
    public void close() {
        Stream.of(inputNorm, qkv, qkvBias, qNorm, kNorm, o, postAttentionNorm, gateUp, down)
                .filter(w -> w != null).forEach(Weight::close);
    }
}
