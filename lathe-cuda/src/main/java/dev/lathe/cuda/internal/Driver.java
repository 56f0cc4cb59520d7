package dev.lathe.cuda.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Map;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Downcalls into the CUDA driver API ({@code libcuda.so.1}). Every wrapper checks the return code and
 * throws a {@link CudaException} naming the function and the CUDA error. Handles (contexts, streams,
 * events, modules, functions) are {@link MemorySegment} addresses; device pointers ({@code CUdeviceptr})
 * are {@code long}s. Context-bound calls use the calling thread's current context.
 */
public final class Driver {
    public static final String LIBRARY = "libcuda.so.1";

    // CUdevice_attribute values used here
    public static final int ATTR_MULTIPROCESSOR_COUNT = 16;
    public static final int ATTR_L2_CACHE_SIZE = 38;
    public static final int ATTR_COMPUTE_CAPABILITY_MAJOR = 75;
    public static final int ATTR_COMPUTE_CAPABILITY_MINOR = 76;

    private static volatile Driver instance;

    private final MethodHandle cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName,
            cuDeviceGetAttribute, cuDeviceTotalMem, cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease,
            cuCtxSetCurrent, cuCtxSynchronize, cuMemAlloc, cuMemFree, cuMemcpyHtoD, cuMemcpyDtoH,
            cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync, cuMemHostAlloc, cuMemFreeHost,
            cuMemGetInfo, cuStreamCreate, cuStreamSynchronize, cuStreamDestroy, cuEventCreate, cuEventRecord,
            cuEventSynchronize, cuEventQuery, cuEventElapsedTime, cuEventDestroy, cuModuleLoadData, cuModuleUnload,
            cuModuleGetFunction, cuFuncGetAttribute, cuFuncSetAttribute, cuLaunchKernel, cuLaunchKernelEx, cuGetErrorName, cuGetErrorString, cuStreamBeginCapture,
            cuStreamEndCapture, cuGraphInstantiateWithFlags, cuGraphLaunch, cuGraphExecDestroy, cuGraphDestroy;
    private final String location;

    private Driver(SymbolLookup lib, String location) {
        this.location = location;
        cuInit = bind(lib, "cuInit", JAVA_INT);
        cuDriverGetVersion = bind(lib, "cuDriverGetVersion", ADDRESS);
        cuDeviceGetCount = bind(lib, "cuDeviceGetCount", ADDRESS);
        cuDeviceGet = bind(lib, "cuDeviceGet", ADDRESS, JAVA_INT);
        cuDeviceGetName = bind(lib, "cuDeviceGetName", ADDRESS, JAVA_INT, JAVA_INT);
        cuDeviceGetAttribute = bind(lib, "cuDeviceGetAttribute", ADDRESS, JAVA_INT, JAVA_INT);
        cuDeviceTotalMem = bind(lib, "cuDeviceTotalMem_v2", ADDRESS, JAVA_INT);
        cuDevicePrimaryCtxRetain = bind(lib, "cuDevicePrimaryCtxRetain", ADDRESS, JAVA_INT);
        cuDevicePrimaryCtxRelease = bind(lib, "cuDevicePrimaryCtxRelease_v2", JAVA_INT);
        cuCtxSetCurrent = bind(lib, "cuCtxSetCurrent", ADDRESS);
        cuCtxSynchronize = bind(lib, "cuCtxSynchronize");
        cuMemAlloc = bind(lib, "cuMemAlloc_v2", ADDRESS, JAVA_LONG);
        cuMemFree = bind(lib, "cuMemFree_v2", JAVA_LONG);
        cuMemcpyHtoD = bind(lib, "cuMemcpyHtoD_v2", JAVA_LONG, ADDRESS, JAVA_LONG);
        cuMemcpyDtoH = bind(lib, "cuMemcpyDtoH_v2", ADDRESS, JAVA_LONG, JAVA_LONG);
        cuMemcpyHtoDAsync = bind(lib, "cuMemcpyHtoDAsync_v2", JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS);
        cuMemcpyDtoHAsync = bind(lib, "cuMemcpyDtoHAsync_v2", ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS);
        cuMemcpyDtoDAsync = bind(lib, "cuMemcpyDtoDAsync_v2", JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS);
        cuMemHostAlloc = bind(lib, "cuMemHostAlloc", ADDRESS, JAVA_LONG, JAVA_INT);
        cuMemFreeHost = bind(lib, "cuMemFreeHost", ADDRESS);
        cuMemGetInfo = bind(lib, "cuMemGetInfo_v2", ADDRESS, ADDRESS);
        cuStreamCreate = bind(lib, "cuStreamCreate", ADDRESS, JAVA_INT);
        cuStreamSynchronize = bind(lib, "cuStreamSynchronize", ADDRESS);
        cuStreamDestroy = bind(lib, "cuStreamDestroy_v2", ADDRESS);
        cuEventCreate = bind(lib, "cuEventCreate", ADDRESS, JAVA_INT);
        cuEventRecord = bind(lib, "cuEventRecord", ADDRESS, ADDRESS);
        cuEventSynchronize = bind(lib, "cuEventSynchronize", ADDRESS);
        cuEventQuery = bind(lib, "cuEventQuery", ADDRESS);
        cuEventElapsedTime = lib.find("cuEventElapsedTime_v2").isPresent()
                ? bind(lib, "cuEventElapsedTime_v2", ADDRESS, ADDRESS, ADDRESS)
                : bind(lib, "cuEventElapsedTime", ADDRESS, ADDRESS, ADDRESS);
        cuEventDestroy = bind(lib, "cuEventDestroy_v2", ADDRESS);
        cuModuleLoadData = bind(lib, "cuModuleLoadData", ADDRESS, ADDRESS);
        cuModuleUnload = bind(lib, "cuModuleUnload", ADDRESS);
        cuModuleGetFunction = bind(lib, "cuModuleGetFunction", ADDRESS, ADDRESS, ADDRESS);
        cuLaunchKernel = bind(lib, "cuLaunchKernel", ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
        cuLaunchKernelEx = bind(lib, "cuLaunchKernelEx", ADDRESS, ADDRESS, ADDRESS, ADDRESS);
        cuFuncGetAttribute = bind(lib, "cuFuncGetAttribute", ADDRESS, JAVA_INT, ADDRESS);
        cuFuncSetAttribute = bind(lib, "cuFuncSetAttribute", ADDRESS, JAVA_INT, JAVA_INT);
        cuGetErrorName = bind(lib, "cuGetErrorName", JAVA_INT, ADDRESS);
        cuStreamBeginCapture = bind(lib, "cuStreamBeginCapture_v2", ADDRESS, JAVA_INT);
        cuStreamEndCapture = bind(lib, "cuStreamEndCapture", ADDRESS, ADDRESS);
        cuGraphInstantiateWithFlags = bind(lib, "cuGraphInstantiateWithFlags", ADDRESS, ADDRESS, JAVA_LONG);
        cuGraphLaunch = bind(lib, "cuGraphLaunch", ADDRESS, ADDRESS);
        cuGraphExecDestroy = bind(lib, "cuGraphExecDestroy", ADDRESS);
        cuGraphDestroy = bind(lib, "cuGraphDestroy", ADDRESS);
        cuGetErrorString = bind(lib, "cuGetErrorString", JAVA_INT, ADDRESS);
    }

    /** The process-wide driver binding, opened on first use. */
    public static Driver get() {
        Driver d = instance;
        if (d != null) return d;
        synchronized (Driver.class) {
            if (instance == null) {
                Map<String, String> env = System.getenv();
                SymbolLookup lib = NativeLibraries.open(LIBRARY, env, Arena.global());
                instance = new Driver(lib, NativeLibraries.locate(LIBRARY, env).describe());
            }
            return instance;
        }
    }

    /** Where libcuda was loaded from. */
    public String location() { return location; }

    static MethodHandle bind(SymbolLookup lib, String name, java.lang.foreign.MemoryLayout... args) {
        MemorySegment symbol = lib.find(name).orElseThrow(() -> new UnsatisfiedLinkError(
                "symbol " + name + " not found in the CUDA library; the driver may be too old (CUDA 13 needs driver 580+)"));
        return Linker.nativeLinker().downcallHandle(symbol, FunctionDescriptor.of(JAVA_INT, args));
    }

    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }

    // ---- error checking ---------------------------------------------------------------------

    /** Throws a {@link CudaException} naming {@code function} unless {@code rc} is CUDA_SUCCESS. */
    public void check(int rc, String function) {
        if (rc != 0) throw new CudaException(function, rc, errorName(rc), errorString(rc));
    }

    public String errorName(int rc) { return describe(cuGetErrorName, rc, "CUDA_ERROR_" + rc); }

    public String errorString(int rc) { return describe(cuGetErrorString, rc, null); }

    private static String describe(MethodHandle h, int rc, String fallback) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ADDRESS);
            int r = (int) h.invokeExact(rc, out);
            MemorySegment s = out.get(ADDRESS, 0);
            if (r != 0 || s.equals(MemorySegment.NULL)) return fallback;
            return s.reinterpret(4096).getString(0);
        } catch (Throwable t) {
            return fallback;
        }
    }

    // ---- device and context -----------------------------------------------------------------

    public void init() {
        try { check((int) cuInit.invokeExact(0), "cuInit"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** e.g. 13000 for CUDA 13.0. */
    public int driverVersion() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDriverGetVersion.invokeExact(v), "cuDriverGetVersion");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public int deviceCount() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDeviceGetCount.invokeExact(v), "cuDeviceGetCount");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** The CUdevice handle of device {@code ordinal}. */
    public int device(int ordinal) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDeviceGet.invokeExact(v, ordinal), "cuDeviceGet");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public String deviceName(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256);
            check((int) cuDeviceGetName.invokeExact(buf, 256, device), "cuDeviceGetName");
            return buf.getString(0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** CU_FUNC_ATTRIBUTE_PTX_VERSION: the virtual architecture a loaded function was compiled for (major * 10 + minor). */
    public static final int FUNC_ATTR_PTX_VERSION = 5;

    public int functionAttribute(MemorySegment function, int attribute) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuFuncGetAttribute.invokeExact(v, attribute, function), "cuFuncGetAttribute");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: the dynamic shared memory a launch may ask for (48 KB unless raised). */
    public static final int FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    public void setFunctionAttribute(MemorySegment function, int attribute, int value) {
        try {
            check((int) cuFuncSetAttribute.invokeExact(function, attribute, value), "cuFuncSetAttribute");
        } catch (Throwable t) { throw rethrow(t); }
    }

    public int deviceAttribute(int device, int attribute) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuDeviceGetAttribute.invokeExact(v, attribute, device), "cuDeviceGetAttribute");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public long deviceTotalMemory(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            check((int) cuDeviceTotalMem.invokeExact(v, device), "cuDeviceTotalMem");
            return v.get(JAVA_LONG, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public MemorySegment primaryContextRetain(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuDevicePrimaryCtxRetain.invokeExact(v, device), "cuDevicePrimaryCtxRetain");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void primaryContextRelease(int device) {
        try { check((int) cuDevicePrimaryCtxRelease.invokeExact(device), "cuDevicePrimaryCtxRelease"); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public void contextSetCurrent(MemorySegment context) {
        try { check((int) cuCtxSetCurrent.invokeExact(context), "cuCtxSetCurrent"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void contextSynchronize() {
        try { check((int) cuCtxSynchronize.invokeExact(), "cuCtxSynchronize"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** {free, total} bytes of the current context's device. */
    public long[] memoryInfo() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment free = a.allocate(JAVA_LONG), total = a.allocate(JAVA_LONG);
            check((int) cuMemGetInfo.invokeExact(free, total), "cuMemGetInfo");
            return new long[]{free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        } catch (Throwable t) { throw rethrow(t); }
    }

    // ---- memory -----------------------------------------------------------------------------

    public long memAlloc(long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            int rc = (int) cuMemAlloc.invokeExact(v, bytes);
            if (rc != 0) {
                throw new CudaException("cuMemAlloc", rc, errorName(rc), errorString(rc) + " (asked for " + bytes + " bytes)");
            }
            return v.get(JAVA_LONG, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void memFree(long ptr) {
        try { check((int) cuMemFree.invokeExact(ptr), "cuMemFree"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void memcpyHtoD(long dst, MemorySegment src, long bytes) {
        try { check((int) cuMemcpyHtoD.invokeExact(dst, src, bytes), "cuMemcpyHtoD"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void memcpyDtoH(MemorySegment dst, long src, long bytes) {
        try { check((int) cuMemcpyDtoH.invokeExact(dst, src, bytes), "cuMemcpyDtoH"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void memcpyHtoDAsync(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        try { check((int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyHtoDAsync"); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public void memcpyDtoHAsync(MemorySegment dst, long src, long bytes, MemorySegment stream) {
        try { check((int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoHAsync"); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public void memcpyDtoDAsync(long dst, long src, long bytes, MemorySegment stream) {
        try { check((int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoDAsync"); }
        catch (Throwable t) { throw rethrow(t); }
    }

    /** Page-locked host memory of {@code bytes}, as a segment of that size. */
    public MemorySegment memHostAlloc(long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuMemHostAlloc.invokeExact(v, bytes, 0), "cuMemHostAlloc");
            return v.get(ADDRESS, 0).reinterpret(bytes);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void memFreeHost(MemorySegment p) {
        try { check((int) cuMemFreeHost.invokeExact(p), "cuMemFreeHost"); } catch (Throwable t) { throw rethrow(t); }
    }

    // ---- streams and events -----------------------------------------------------------------

    public MemorySegment streamCreate(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuStreamCreate.invokeExact(v, flags), "cuStreamCreate");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void streamSynchronize(MemorySegment stream) {
        try { check((int) cuStreamSynchronize.invokeExact(stream), "cuStreamSynchronize"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void streamDestroy(MemorySegment stream) {
        try { check((int) cuStreamDestroy.invokeExact(stream), "cuStreamDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    public MemorySegment eventCreate(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuEventCreate.invokeExact(v, flags), "cuEventCreate");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void eventRecord(MemorySegment event, MemorySegment stream) {
        try { check((int) cuEventRecord.invokeExact(event, stream), "cuEventRecord"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void eventSynchronize(MemorySegment event) {
        try { check((int) cuEventSynchronize.invokeExact(event), "cuEventSynchronize"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** CUresult of cuEventQuery for an event whose work is still queued. */
    private static final int CUDA_ERROR_NOT_READY = 600;

    /** Whether the work before the event's last record has completed (cuEventQuery), without waiting. */
    public boolean eventQuery(MemorySegment event) {
        try {
            int rc = (int) cuEventQuery.invokeExact(event);
            if (rc == CUDA_ERROR_NOT_READY) return false;
            check(rc, "cuEventQuery");
            return true;
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** Milliseconds between two recorded, completed events. */
    public float eventElapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_FLOAT);
            check((int) cuEventElapsedTime.invokeExact(v, start, end), "cuEventElapsedTime");
            return v.get(JAVA_FLOAT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void eventDestroy(MemorySegment event) {
        try { check((int) cuEventDestroy.invokeExact(event), "cuEventDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    // ---- graphs -------------------------------------------------------------------------------

    /** CUstreamCaptureMode: other threads' and this thread's unsafe calls are not checked (cuMemAlloc may run). */
    public static final int CAPTURE_MODE_RELAXED = 2;

    public void streamBeginCapture(MemorySegment stream, int mode) {
        try { check((int) cuStreamBeginCapture.invokeExact(stream, mode), "cuStreamBeginCapture"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** Ends a capture and returns the graph; a capture invalidated by an illegal call fails here. */
    public MemorySegment streamEndCapture(MemorySegment stream) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuStreamEndCapture.invokeExact(stream, v), "cuStreamEndCapture");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public MemorySegment graphInstantiate(MemorySegment graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuGraphInstantiateWithFlags.invokeExact(v, graph, 0L), "cuGraphInstantiateWithFlags");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void graphLaunch(MemorySegment exec, MemorySegment stream) {
        try { check((int) cuGraphLaunch.invokeExact(exec, stream), "cuGraphLaunch"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void graphExecDestroy(MemorySegment exec) {
        try { check((int) cuGraphExecDestroy.invokeExact(exec), "cuGraphExecDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    public void graphDestroy(MemorySegment graph) {
        try { check((int) cuGraphDestroy.invokeExact(graph), "cuGraphDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    // ---- modules and launches ---------------------------------------------------------------

    /** Loads a cubin, PTX or fatbin image (the image must stay readable during the call only). */
    public MemorySegment moduleLoadData(MemorySegment image) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) cuModuleLoadData.invokeExact(v, image), "cuModuleLoadData");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public void moduleUnload(MemorySegment module) {
        try { check((int) cuModuleUnload.invokeExact(module), "cuModuleUnload"); } catch (Throwable t) { throw rethrow(t); }
    }

    public MemorySegment moduleGetFunction(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            int rc = (int) cuModuleGetFunction.invokeExact(v, module, a.allocateFrom(name));
            if (rc != 0) throw new CudaException("cuModuleGetFunction", rc, errorName(rc), "kernel '" + name + "'");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** sizeof(CUlaunchConfig) and sizeof(CUlaunchAttribute) (cuda.h), and the attribute's id. */
    private static final long LAUNCH_CONFIG_BYTES = 56, LAUNCH_ATTRIBUTE_BYTES = 72;
    private static final int ATTR_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

    /**
     * cuLaunchKernelEx with programmatic stream serialization allowed: the kernel may begin before the
     * previous kernel on the stream has finished, and must wait for it itself (griddepcontrol.wait) before
     * touching memory. One-dimensional blocks, {@code sharedBytes} of dynamic shared memory.
     */
    public void launchKernelDependent(Arena arena, MemorySegment function, int gx, int gy, int gz, int bx, int sharedBytes,
                                      MemorySegment stream, MemorySegment kernelParams) {
        MemorySegment attr = arena.allocate(LAUNCH_ATTRIBUTE_BYTES, 8);
        attr.set(JAVA_INT, 0, ATTR_PROGRAMMATIC_STREAM_SERIALIZATION);
        attr.set(JAVA_INT, 8, 1);  // value.programmaticStreamSerializationAllowed
        MemorySegment config = arena.allocate(LAUNCH_CONFIG_BYTES, 8);
        config.set(JAVA_INT, 0, gx);
        config.set(JAVA_INT, 4, gy);
        config.set(JAVA_INT, 8, gz);
        config.set(JAVA_INT, 12, bx);
        config.set(JAVA_INT, 16, 1);
        config.set(JAVA_INT, 20, 1);
        config.set(JAVA_INT, 24, sharedBytes);  // sharedMemBytes
        config.set(ADDRESS, 32, stream);    // hStream
        config.set(ADDRESS, 40, attr);      // attrs
        config.set(JAVA_INT, 48, 1);        // numAttrs
        try {
            check((int) cuLaunchKernelEx.invokeExact(config, function, kernelParams, MemorySegment.NULL), "cuLaunchKernelEx");
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** {@code kernelParams} is a {@code void*[]} with one pointer per kernel argument. */
    public void launchKernel(MemorySegment function, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes,
                             MemorySegment stream, MemorySegment kernelParams) {
        try {
            check((int) cuLaunchKernel.invokeExact(function, gx, gy, gz, bx, by, bz, sharedBytes, stream,
                    kernelParams, MemorySegment.NULL), "cuLaunchKernel");
        } catch (Throwable t) { throw rethrow(t); }
    }
}
