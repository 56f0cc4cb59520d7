package dev.lathe.cuda.driver;

import java.lang.foreign.MemorySegment;

/** A CUDA event, for ordering and for timing device work. */
public final class Event implements AutoCloseable {
    private final CudaContext context;
    private MemorySegment handle;

    Event(CudaContext context, MemorySegment handle) {
        this.context = context;
        this.handle = handle;
    }

    public void record(Stream stream) {
        context.makeCurrent();
        context.driver().eventRecord(handle(), stream.handle());
    }

    public void synchronize() {
        context.makeCurrent();
        context.driver().eventSynchronize(handle());
    }

    /** Whether the work queued before the last {@link #record} has completed; does not wait. */
    public boolean isComplete() {
        context.makeCurrent();
        return context.driver().eventQuery(handle());
    }

    /** Milliseconds from {@code this} to {@code end}; both must have been recorded and completed. */
    public float millisTo(Event end) {
        context.makeCurrent();
        return context.driver().eventElapsedMillis(handle(), end.handle());
    }

    MemorySegment handle() {
        if (handle == null) throw new IllegalStateException("event was destroyed");
        return handle;
    }

    @Override
    public void close() {
        if (handle != null) {
            context.makeCurrent();
            context.driver().eventDestroy(handle);
            handle = null;
        }
    }
}
