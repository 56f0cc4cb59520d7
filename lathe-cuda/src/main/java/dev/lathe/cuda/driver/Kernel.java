package dev.lathe.cuda.driver;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.ADDRESS;

/** One {@code __global__} function taking one parameter struct by value. */
public final class Kernel {
    private final CudaContext context;
    private final String name;
    private final String functionName;
    private final MemorySegment function;
    private final KernelParams params;
    /** Launched with programmatic stream serialization: asked for, and the loaded code has the wait (sm_90+). */
    private final boolean dependent;
    /** Dynamic shared memory of each launch, in bytes (see {@link #withDynamicShared}). */
    private int sharedBytes;

    Kernel(CudaContext context, String module, String functionName, MemorySegment function, KernelParams params) {
        this.context = context;
        this.name = module + "." + functionName;
        this.functionName = functionName;
        this.function = function;
        this.params = params;
        this.dependent = context.dependentLaunches()
                && context.driver().functionAttribute(function, dev.lathe.cuda.internal.Driver.FUNC_ATTR_PTX_VERSION) >= 90;
    }

    /** "module.function", as errors name the kernel. */
    public String name() { return name; }

    /** The {@code __global__} function's own name. */
    public String function() { return functionName; }

    /**
     * Gives every launch {@code bytes} of dynamic shared memory ({@code extern __shared__}), raising the function's
     * limit above the default 48 KB where needed; a size the device cannot give fails here, naming the kernel.
     */
    public Kernel withDynamicShared(int bytes) {
        if (bytes < 0) throw new IllegalArgumentException(name + ": dynamic shared memory of " + bytes + " bytes");
        context.makeCurrent();
        try {
            context.driver().setFunctionAttribute(function, dev.lathe.cuda.internal.Driver.FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
        } catch (RuntimeException e) {
            throw new IllegalStateException(name + ": cannot have " + bytes + " bytes of dynamic shared memory on this device", e);
        }
        sharedBytes = bytes;
        return this;
    }

    public KernelParams params() { return params; }

    /**
     * Queues the kernel on {@code stream} over a {@code gridX x gridY} grid of {@code blockX}-thread blocks.
     * {@code args} are the struct's fields in order (see {@link KernelParams#write}).
     */
    public void launch(Stream stream, int gridX, int gridY, int blockX, Object... args) {
        launch3(stream, gridX, gridY, 1, blockX, args);
    }

    /** As {@link #launch}, over a {@code gridX x gridY x gridZ} grid. */
    public void launch3(Stream stream, int gridX, int gridY, int gridZ, int blockX, Object... args) {
        if (gridX <= 0 || gridY <= 0 || gridZ <= 0 || blockX <= 0 || blockX > 1024 || gridY > 65535 || gridZ > 65535) {
            throw new IllegalArgumentException(name + ": bad launch shape grid [" + gridX + ", " + gridY + ", " + gridZ
                    + "] block " + blockX);
        }
        context.makeCurrent();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment struct = params.write(arena, args);
            MemorySegment argv = arena.allocate(ADDRESS);
            argv.set(ADDRESS, 0, struct);
            if (dependent) {
                context.driver().launchKernelDependent(arena, function, gridX, gridY, gridZ, blockX, sharedBytes, stream.handle(), argv);
            } else {
                context.driver().launchKernel(function, gridX, gridY, gridZ, blockX, 1, 1, sharedBytes, stream.handle(), argv);
            }
        }
    }
}
