package dev.lathe.cuda.driver;

/** Device memory from {@code cuMemAlloc}; freed by {@link #close()}. A zero-byte buffer has address 0. */
public final class DeviceBuffer implements AutoCloseable {
    private final CudaContext context;
    private final long bytes;
    private long address;

    DeviceBuffer(CudaContext context, long address, long bytes) {
        this.context = context;
        this.address = address;
        this.bytes = bytes;
    }

    /** The device pointer; an error after {@link #close()}. */
    public long address() {
        if (address == 0 && bytes != 0) throw new IllegalStateException("device buffer of " + bytes + " bytes was freed");
        return address;
    }

    public long bytes() { return bytes; }

    public boolean isClosed() { return address == 0 && bytes != 0; }

    /** Frees the memory; cuMemFree waits for queued work that may still use it. */
    @Override
    public void close() {
        if (address != 0) {
            context.makeCurrent();
            context.driver().memFree(address);
            address = 0;
        }
    }
}
