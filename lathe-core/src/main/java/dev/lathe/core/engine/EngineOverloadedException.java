package dev.lathe.core.engine;

/** The waiting queue is full; the caller should retry later (HTTP 429 with Retry-After). */
public final class EngineOverloadedException extends RuntimeException {
    private final int retryAfterSeconds;

    public EngineOverloadedException(int queued, int limit, int retryAfterSeconds) {
        super("the engine has " + queued + " requests waiting (limit " + limit + "); retry in " + retryAfterSeconds + " s");
        this.retryAfterSeconds = retryAfterSeconds;
    }

    public int retryAfterSeconds() { return retryAfterSeconds; }
}
