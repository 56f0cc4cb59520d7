package dev.lathe.cuda.driver;

import java.lang.foreign.MemorySegment;

/** Page-locked host memory ({@code cuMemHostAlloc}): the source or target of asynchronous copies. */
public final class PinnedBuffer implements AutoCloseable {
    private final CudaContext context;
    private MemorySegment segment;

    PinnedBuffer(CudaContext context, MemorySegment segment) {
        this.context = context;
        this.segment = segment;
    }

    public MemorySegment segment() {
        if (segment == null) throw new IllegalStateException("pinned buffer was freed");
        return segment;
    }

    public long bytes() { return segment().byteSize(); }

    @Override
    public void close() {
        if (segment != null) {
            context.makeCurrent();
            context.driver().memFreeHost(segment);
            segment = null;
        }
    }
}
