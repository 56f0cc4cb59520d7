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
 * @param logitAttention null, or where each sequence's one logit row is its last row: the attention of those rows alone
 *        (one query row a sequence, at its last position), for a last layer that runs on the logit rows only. It shares
 *        {@code contextLens} and {@code blockTables} with {@code attention}; its own are {@code queryStarts} and
 *        {@code slotMapping} (the logit rows' slots), which {@link #close} closes (not through its close()).
 */
public record StepInput(Tensor tokenIds, Tensor cos, Tensor sin, AttentionMetadata attention, Tensor logitRows,
                        AttentionMetadata logitAttention) implements AutoCloseable {
    public StepInput {
        if (logitAttention != null && (logitAttention.contextLens() != attention.contextLens()
                || logitAttention.blockTables() != attention.blockTables() || logitAttention.numSeqs() != attention.numSeqs()
                || logitAttention.numTokens() != logitRows.cols())) {
            throw new IllegalArgumentException("logitAttention must share the step's context lengths and block tables and"
                    + " have one row for each logit row");
        }
    }

    /** A step without logit-row attention. */
    public StepInput(Tensor tokenIds, Tensor cos, Tensor sin, AttentionMetadata attention, Tensor logitRows) {
        this(tokenIds, cos, sin, attention, logitRows, null);
    }

    public int numTokens() { return attention.numTokens(); }

    @Override
    public void close() {
        tokenIds.close();
        cos.close();
        sin.close();
        attention.close();
        logitRows.close();
        if (logitAttention != null) {
            logitAttention.queryStarts().close();
            logitAttention.slotMapping().close();
        }
    }
}
