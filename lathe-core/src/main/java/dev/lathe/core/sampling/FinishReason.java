package dev.lathe.core.sampling;

import java.util.Locale;

/** Why a sequence ended; {@link #apiName()} is the OpenAI {@code finish_reason} string. */
public enum FinishReason {
    /** EOS, a stop token id or a stop string. */
    STOP,
    /** {@code max_tokens} reached, or the model's context is full. */
    LENGTH,
    /** The client went away or cancelled the request. */
    ABORT;

    /** {@code "stop"}, {@code "length"} or {@code "abort"}. */
    public String apiName() {
        return name().toLowerCase(Locale.ROOT);
    }
}
