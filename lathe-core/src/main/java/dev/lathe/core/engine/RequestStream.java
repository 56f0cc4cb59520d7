package dev.lathe.core.engine;

import java.util.concurrent.TimeUnit;

/**
 * The outputs of one submitted request, in order, as the engine thread produces them. Consumed by one
 * thread (e.g. the HTTP handler's virtual thread). The stream ends after every sample has delivered a
 * delta with a finish reason; {@link #abort()} (or {@link #close()} before the end) frees the request's
 * KV blocks within one engine step and ends the stream with FinishReason.ABORT.
 *
 * <p>Contract for implementations: {@code next} never blocks the engine thread; a slow consumer only
 * accumulates deltas in this stream's queue.
 */
public interface RequestStream extends AutoCloseable {
    String requestId();

    /** The next delta, waiting as long as needed; null once the stream has ended. */
    RequestOutput next() throws InterruptedException;

    /** The next delta, or null if none arrives within the timeout (check {@link #isDone()}). */
    RequestOutput poll(long timeout, TimeUnit unit) throws InterruptedException;

    /** True once every delta, the final ones included, has been taken. */
    boolean isDone();

    /**
     * Why the engine ended this request early (its samples then end with ABORT), or null. Meaningful once
     * the stream has ended.
     */
    default Throwable error() { return null; }

    /** Stops the request wherever it is; idempotent. */
    void abort();

    /** Aborts the request unless it has finished. */
    @Override
    default void close() {
        if (!isDone()) abort();
    }
}
