package dev.lathe.cuda.driver;

import dev.lathe.cuda.internal.Driver;

import java.lang.foreign.MemorySegment;

/**
 * The primary context of one GPU. The driver keeps a current context per thread; every entry point that
 * touches the device calls {@link #makeCurrent()} first, so any thread may use the context.
 */
public final class CudaContext implements AutoCloseable {
    private static final ThreadLocal<CudaContext> CURRENT = new ThreadLocal<>();

    private final Driver driver;
    private final int ordinal;
    private final int device;
    private final MemorySegment handle;
    private final boolean dependentLaunches;
    private volatile boolean closed;

    /**
     * System property: {@code true} launches every kernel with programmatic stream serialization (Hopper and
     * later), so that a kernel's blocks may start while the one before it finishes; each Lathe kernel first
     * waits for its predecessor's results (LATHE_PDL_WAIT in common.cuh). On by default; {@code false} launches
     * every kernel plainly.
     */
    public static final String DEPENDENT_LAUNCH_PROPERTY = "lathe.pdl";

    private CudaContext(Driver driver, int ordinal, int device, MemorySegment handle) {
        this.driver = driver;
        this.ordinal = ordinal;
        this.device = device;
        this.handle = handle;
        // the kernels' wait compiles only for compute capability 9.0 and later; older GPUs launch as before
        this.dependentLaunches = Boolean.parseBoolean(System.getProperty(DEPENDENT_LAUNCH_PROPERTY, "true"))
                && driver.deviceAttribute(device, Driver.ATTR_COMPUTE_CAPABILITY_MAJOR) >= 9;
    }

    /**
     * Whether kernels launch with programmatic stream serialization (see {@link #DEPENDENT_LAUNCH_PROPERTY}); each
     * kernel also checks that its loaded code was built for compute capability 9.0 or later.
     */
    public boolean dependentLaunches() { return dependentLaunches; }

    /** Initialises the driver and retains the primary context of GPU {@code ordinal}. */
    public static CudaContext open(int ordinal) {
        Driver driver = Driver.get();
        driver.init();
        int count = driver.deviceCount();
        if (ordinal < 0 || ordinal >= count) {
            throw new IllegalArgumentException("GPU " + ordinal + " does not exist: the driver sees " + count + " GPU(s)");
        }
        int device = driver.device(ordinal);
        MemorySegment ctx = driver.primaryContextRetain(device);
        CudaContext c = new CudaContext(driver, ordinal, device, ctx);
        c.makeCurrent();
        return c;
    }

    public Driver driver() { return driver; }

    public int ordinal() { return ordinal; }

    /** Makes this the calling thread's current context (a no-op when it already is). */
    public void makeCurrent() {
        if (closed) throw new IllegalStateException("CUDA context of GPU " + ordinal + " was closed");
        if (CURRENT.get() != this) {
            driver.contextSetCurrent(handle);
            CURRENT.set(this);
        }
    }

    public DeviceInfo info() {
        return new DeviceInfo(ordinal, driver.deviceName(device),
                driver.deviceAttribute(device, Driver.ATTR_COMPUTE_CAPABILITY_MAJOR),
                driver.deviceAttribute(device, Driver.ATTR_COMPUTE_CAPABILITY_MINOR),
                driver.deviceAttribute(device, Driver.ATTR_MULTIPROCESSOR_COUNT),
                driver.deviceAttribute(device, Driver.ATTR_L2_CACHE_SIZE),
                driver.deviceTotalMemory(device));
    }

    /** {free, total} device memory in bytes. */
    public long[] memoryInfo() {
        makeCurrent();
        return driver.memoryInfo();
    }

    public DeviceBuffer allocate(long bytes) {
        makeCurrent();
        return new DeviceBuffer(this, bytes == 0 ? 0 : driver.memAlloc(bytes), bytes);
    }

    public PinnedBuffer allocatePinned(long bytes) {
        makeCurrent();
        return new PinnedBuffer(this, driver.memHostAlloc(bytes));
    }

    public Stream createStream() {
        makeCurrent();
        return new Stream(this, driver.streamCreate(0));
    }

    public Event createEvent() {
        makeCurrent();
        return new Event(this, driver.eventCreate(0));
    }

    /** Loads a fatbin, cubin or PTX image. */
    public CudaModule loadModule(String name, byte[] image) {
        makeCurrent();
        try (var arena = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment copy = arena.allocate(image.length + 1L, 16);
            MemorySegment.copy(MemorySegment.ofArray(image), 0, copy, 0, image.length);
            return new CudaModule(this, name, driver.moduleLoadData(copy));
        }
    }

    public void synchronize() {
        makeCurrent();
        driver.contextSynchronize();
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        if (CURRENT.get() == this) CURRENT.remove();
        driver.primaryContextRelease(device);
    }
}
