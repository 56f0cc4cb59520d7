package dev.lathe.core.model;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Tensor;

/**
 * Everything one forward step needs, built once per step on the host and uploaded.
 *
 * @param tokenIds   {@code [1, numTokens]} I32, the new tokens of every scheduled sequence, packed
 * @param cos        {@code [numTokens, headDim / 2]} rotary cos of each token's position
 * @param sin        same shape, sin
 * @param attention  sequence layout, block tables and slot mapping
 * @param logitRows  {@code [1, numLogitRows]} I32, which token rows need logits (usually each sequence's last)
 */
public record StepInput(Tensor tokenIds, Tensor cos, Tensor sin, AttentionMetadata attention, Tensor logitRows)
        implements AutoCloseable {
    public int numTokens() { return attention.numTokens(); }

    @Override
    public void close() {
        tokenIds.close();
        cos.close();
        sin.close();
        attention.close();
        logitRows.close();
    }
}
