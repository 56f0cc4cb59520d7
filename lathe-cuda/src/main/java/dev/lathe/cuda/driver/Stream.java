package dev.lathe.cuda.driver;

import java.lang.foreign.MemorySegment;

/** A CUDA stream: work queued on it runs in order. Created blocking, so it orders with the null stream. */
public final class Stream implements AutoCloseable {
    private final CudaContext context;
    private MemorySegment handle;

    Stream(CudaContext context, MemorySegment handle) {
        this.context = context;
        this.handle = handle;
    }

    public MemorySegment handle() {
        if (handle == null) throw new IllegalStateException("stream was destroyed");
        return handle;
    }

    public void copyToDevice(DeviceBuffer dst, long dstOffset, MemorySegment src, long bytes) {
        checkRange(dst, dstOffset, bytes, "copyToDevice");
        if (bytes == 0) return;
        context.makeCurrent();
        context.driver().memcpyHtoDAsync(dst.address() + dstOffset, src, bytes, handle());
    }

    public void copyToHost(MemorySegment dst, DeviceBuffer src, long srcOffset, long bytes) {
        checkRange(src, srcOffset, bytes, "copyToHost");
        if (bytes == 0) return;
        context.makeCurrent();
        context.driver().memcpyDtoHAsync(dst, src.address() + srcOffset, bytes, handle());
    }

    public void copyDeviceToDevice(DeviceBuffer dst, long dstOffset, DeviceBuffer src, long srcOffset, long bytes) {
        checkRange(dst, dstOffset, bytes, "copyDeviceToDevice");
        checkRange(src, srcOffset, bytes, "copyDeviceToDevice");
        if (bytes == 0) return;
        context.makeCurrent();
        context.driver().memcpyDtoDAsync(dst.address() + dstOffset, src.address() + srcOffset, bytes, handle());
    }

    private static void checkRange(DeviceBuffer b, long offset, long bytes, String op) {
        if (offset < 0 || bytes < 0 || offset + bytes > b.bytes()) {
            throw new IllegalArgumentException(op + ": bytes [" + offset + ", " + (offset + bytes)
                    + ") fall outside a device buffer of " + b.bytes() + " bytes");
        }
    }

    /** Waits for everything queued so far. */
    public void synchronize() {
        context.makeCurrent();
        context.driver().streamSynchronize(handle());
    }

    @Override
    public void close() {
        if (handle != null) {
            context.makeCurrent();
            context.driver().streamDestroy(handle);
            handle = null;
        }
    }
}
