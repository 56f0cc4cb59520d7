package dev.lathe.cuda.driver;

import java.lang.foreign.MemorySegment;

/** A loaded code image (one fatbin); its kernels are looked up by their extern "C" names. */
public final class CudaModule implements AutoCloseable {
    private final CudaContext context;
    private final String name;
    private MemorySegment handle;

    CudaModule(CudaContext context, String name, MemorySegment handle) {
        this.context = context;
        this.name = name;
        this.handle = handle;
    }

    public String name() { return name; }

    /** The kernel {@code function}, whose single argument is the struct {@code params} describes. */
    public Kernel kernel(String function, KernelParams params) {
        if (handle == null) throw new IllegalStateException("module " + name + " was unloaded");
        context.makeCurrent();
        return new Kernel(context, name, function, context.driver().moduleGetFunction(handle, function), params);
    }

    @Override
    public void close() {
        if (handle != null) {
            context.makeCurrent();
            context.driver().moduleUnload(handle);
            handle = null;
        }
    }
}
