package dev.lathe.cuda.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Map;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Downcalls into cuBLASLt ({@code libcublasLt.so.13}); every status is checked and named. Matrices are
 * column-major as cuBLASLt sees them; device pointers are {@code long}s.
 */
public final class BlasLt {
    public static final String LIBRARY = "libcublasLt.so.13";

    // cudaDataType
    public static final int R_32F = 0, R_16F = 2, R_16BF = 14;
    // cublasComputeType_t
    public static final int COMPUTE_32F = 68;
    // cublasOperation_t
    public static final int OP_N = 0, OP_T = 1;
    // cublasLtMatmulDescAttributes_t
    public static final int DESC_TRANSA = 3, DESC_TRANSB = 4;
    // cublasLtMatmulPreferenceAttributes_t
    public static final int PREF_MAX_WORKSPACE_BYTES = 1;
    /** sizeof(cublasLtMatmulHeuristicResult_t): algo (8 x uint64), workspaceSize, state, wavesCount, reserved[4]. */
    public static final long HEURISTIC_RESULT_BYTES = 96;
    public static final long ALGO_BYTES = 64;
    public static final long HEURISTIC_STATE_OFFSET = 72;

    private static volatile BlasLt instance;

    private final MethodHandle create, destroy, descCreate, descDestroy, descSetAttribute, layoutCreate, layoutDestroy,
            prefCreate, prefDestroy, prefSetAttribute, heuristic, matmul, statusName;
    private final String location;

    private BlasLt(SymbolLookup lib, String location) {
        this.location = location;
        create = Driver.bind(lib, "cublasLtCreate", ADDRESS);
        destroy = Driver.bind(lib, "cublasLtDestroy", ADDRESS);
        descCreate = Driver.bind(lib, "cublasLtMatmulDescCreate", ADDRESS, JAVA_INT, JAVA_INT);
        descDestroy = Driver.bind(lib, "cublasLtMatmulDescDestroy", ADDRESS);
        descSetAttribute = Driver.bind(lib, "cublasLtMatmulDescSetAttribute", ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG);
        layoutCreate = Driver.bind(lib, "cublasLtMatrixLayoutCreate", ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG);
        layoutDestroy = Driver.bind(lib, "cublasLtMatrixLayoutDestroy", ADDRESS);
        prefCreate = Driver.bind(lib, "cublasLtMatmulPreferenceCreate", ADDRESS);
        prefDestroy = Driver.bind(lib, "cublasLtMatmulPreferenceDestroy", ADDRESS);
        prefSetAttribute = Driver.bind(lib, "cublasLtMatmulPreferenceSetAttribute", ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG);
        heuristic = Driver.bind(lib, "cublasLtMatmulAlgoGetHeuristic", ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS,
                ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
        matmul = Driver.bind(lib, "cublasLtMatmul", ADDRESS, ADDRESS, ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS,
                ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS);
        statusName = Linker.nativeLinker().downcallHandle(lib.find("cublasLtGetStatusName").orElseThrow(),
                FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    public static BlasLt get() {
        BlasLt b = instance;
        if (b != null) return b;
        synchronized (BlasLt.class) {
            if (instance == null) {
                Map<String, String> env = System.getenv();
                SymbolLookup lib = NativeLibraries.open(LIBRARY, env, Arena.global());
                instance = new BlasLt(lib, NativeLibraries.locate(LIBRARY, env).describe());
            }
            return instance;
        }
    }

    public String location() { return location; }

    public void check(int status, String function) {
        if (status != 0) throw new CudaException(function, status, statusName(status), null);
    }

    public String statusName(int status) {
        try {
            MemorySegment s = (MemorySegment) statusName.invokeExact(status);
            return s.equals(MemorySegment.NULL) ? "CUBLAS_STATUS_" + status : s.reinterpret(256).getString(0);
        } catch (Throwable t) {
            return "CUBLAS_STATUS_" + status;
        }
    }

    private MemorySegment handleOut(MethodHandle h, String function) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) h.invokeExact(v), function);
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    private void call1(MethodHandle h, MemorySegment arg, String function) {
        try { check((int) h.invokeExact(arg), function); } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    public MemorySegment create() { return handleOut(create, "cublasLtCreate"); }

    public void destroy(MemorySegment handle) { call1(destroy, handle, "cublasLtDestroy"); }

    public MemorySegment matmulDescCreate(int computeType, int scaleType) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) descCreate.invokeExact(v, computeType, scaleType), "cublasLtMatmulDescCreate");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    public void matmulDescDestroy(MemorySegment desc) { call1(descDestroy, desc, "cublasLtMatmulDescDestroy"); }

    public void matmulDescSetInt(MemorySegment desc, int attribute, int value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocateFrom(JAVA_INT, value);
            check((int) descSetAttribute.invokeExact(desc, attribute, v, 4L), "cublasLtMatmulDescSetAttribute");
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    /** A column-major {@code rows x cols} layout with leading dimension {@code ld}. */
    public MemorySegment matrixLayoutCreate(int type, long rows, long cols, long ld) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ADDRESS);
            check((int) layoutCreate.invokeExact(v, type, rows, cols, ld), "cublasLtMatrixLayoutCreate");
            return v.get(ADDRESS, 0);
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    public void matrixLayoutDestroy(MemorySegment layout) { call1(layoutDestroy, layout, "cublasLtMatrixLayoutDestroy"); }

    public MemorySegment preferenceCreate() { return handleOut(prefCreate, "cublasLtMatmulPreferenceCreate"); }

    public void preferenceDestroy(MemorySegment pref) { call1(prefDestroy, pref, "cublasLtMatmulPreferenceDestroy"); }

    public void preferenceSetLong(MemorySegment pref, int attribute, long value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocateFrom(JAVA_LONG, value);
            check((int) prefSetAttribute.invokeExact(pref, attribute, v, 8L), "cublasLtMatmulPreferenceSetAttribute");
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    /** Fills {@code results} (count x {@link #HEURISTIC_RESULT_BYTES}) and returns how many came back. */
    public int algoGetHeuristic(MemorySegment handle, MemorySegment desc, MemorySegment a, MemorySegment b,
                                MemorySegment c, MemorySegment d, MemorySegment pref, int requested, MemorySegment results) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(JAVA_INT);
            check((int) heuristic.invokeExact(handle, desc, a, b, c, d, pref, requested, results, count),
                    "cublasLtMatmulAlgoGetHeuristic");
            return count.get(JAVA_INT, 0);
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }

    /** {@code D = alpha * op(A) op(B) + beta * C}; alpha and beta point to host scalars of the scale type. */
    public void matmul(MemorySegment handle, MemorySegment desc, MemorySegment alpha, long aPtr, MemorySegment aLayout,
                       long bPtr, MemorySegment bLayout, MemorySegment beta, long cPtr, MemorySegment cLayout,
                       long dPtr, MemorySegment dLayout, MemorySegment algo, long workspace, long workspaceBytes,
                       MemorySegment stream) {
        try {
            check((int) matmul.invokeExact(handle, desc, alpha, aPtr, aLayout, bPtr, bLayout, beta, cPtr, cLayout,
                    dPtr, dLayout, algo, workspace, workspaceBytes, stream), "cublasLtMatmul");
        } catch (Throwable t) { throw Driver.rethrow(t); }
    }
}
