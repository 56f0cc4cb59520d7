package dev.lathe.core.generate;

/** A sequence would grow past the model's context (or the configured max model length). */
public final class ContextLengthException extends IllegalArgumentException {
    private final int requested;
    private final int limit;

    public ContextLengthException(int requested, int limit) {
        super("the sequence needs " + requested + " tokens but the context holds " + limit
                + "; shorten the prompt or lower max tokens (or raise --max-model-len up to the model's limit)");
        this.requested = requested;
        this.limit = limit;
    }

    public int requested() { return requested; }

    public int limit() { return limit; }
}
