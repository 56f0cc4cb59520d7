package dev.lathe.core.engine;

import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A {@link RequestStream} over an unbounded queue: the engine thread {@link #push}es and never blocks;
 * one consumer takes. After the engine's {@link #end}, a sentinel marks the end of the queue.
 */
final class QueueRequestStream implements RequestStream {
    private static final RequestOutput END = new RequestOutput("", 0, new int[0], "", null, null, null, 0, 0, 0);

    private final String requestId;
    private final Consumer<String> onAbort;
    private final LinkedBlockingQueue<RequestOutput> queue = new LinkedBlockingQueue<>();
    private volatile boolean done;
    private volatile Throwable error;

    QueueRequestStream(String requestId, Consumer<String> onAbort) {
        this.requestId = requestId;
        this.onAbort = onAbort;
    }

    @Override
    public String requestId() { return requestId; }

    void push(RequestOutput out) { queue.add(out); }

    /** Called once, after every sample's final delta; {@code cause} is non-null when the request failed. */
    void end(Throwable cause) {
        error = cause;
        queue.add(END);
    }

    @Override
    public RequestOutput next() throws InterruptedException {
        if (done) return null;
        return take(queue.take());
    }

    @Override
    public RequestOutput poll(long timeout, TimeUnit unit) throws InterruptedException {
        if (done) return null;
        RequestOutput o = queue.poll(timeout, unit);
        return o == null ? null : take(o);
    }

    private RequestOutput take(RequestOutput o) {
        if (o == END) {
            done = true;
            return null;
        }
        return o;
    }

    @Override
    public boolean isDone() {
        if (!done && queue.peek() == END) {
            queue.poll();
            done = true;
        }
        return done;
    }

    @Override
    public Throwable error() { return error; }

    @Override
    public void abort() {
        if (!done) onAbort.accept(requestId);
    }
}
