package dev.lathe.cuda.driver;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.ADDRESS;

/** One {@code __global__} function taking one parameter struct by value. */
public final class Kernel {
    private final CudaContext context;
    private final String name;
    private final MemorySegment function;
    private final KernelParams params;
    /** Launched with programmatic stream serialization: asked for, and the loaded code has the wait (sm_90+). */
    private final boolean dependent;

    Kernel(CudaContext context, String name, MemorySegment function, KernelParams params) {
        this.context = context;
        this.name = name;
        this.function = function;
        this.params = params;
        this.dependent = context.dependentLaunches()
                && context.driver().functionAttribute(function, dev.lathe.cuda.internal.Driver.FUNC_ATTR_PTX_VERSION) >= 90;
    }

    public String name() { return name; }

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
                context.driver().launchKernelDependent(arena, function, gridX, gridY, gridZ, blockX, stream.handle(), argv);
            } else {
                context.driver().launchKernel(function, gridX, gridY, gridZ, blockX, 1, 1, 0, stream.handle(), argv);
            }
        }
    }
}
