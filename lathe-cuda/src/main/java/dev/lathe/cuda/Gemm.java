package dev.lathe.cuda;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.CudaContext;
import dev.lathe.cuda.driver.DeviceBuffer;
import dev.lathe.cuda.driver.Stream;
import dev.lathe.cuda.internal.BlasLt;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * {@code out[n, outF] = x[n, in] @ w[outF, in]^T} through cuBLASLt, float32 accumulation and output.
 *
 * <p>Row-major to cuBLASLt's column-major: w row-major is a column-major {@code [in, outF]} matrix with
 * ld = in, used transposed (op T); x row-major is column-major {@code [in, n]}, used as is; out row-major is
 * column-major {@code [outF, n]} with ld = outF. So D(outF x n) = W^T(outF x in) . X(in x n), the "TN"
 * layout tensor cores like best.
 *
 * <p>Types: cuBLASLt needs A and B in one type, so for BF16/F16 weights the caller hands over activations
 * in the weight type: split into two 16-bit parts for up to 64 rows, rounded beyond (see
 * {@link CudaBackend#linear}); C and D stay float32, compute is CUBLAS_COMPUTE_32F. F32 weights run a plain
 * float32 GEMM (no TF32).
 */
final class Gemm implements AutoCloseable {
    private static final long WORKSPACE_BYTES = 32L << 20;

    private record Shape(DType type, int n, int in, int out) {}

    private record Plan(MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment d, MemorySegment algo) {}

    private final CudaContext context;
    private final BlasLt lt;
    private final MemorySegment handle;
    private final DeviceBuffer workspace;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment one, zero;
    private final Map<Shape, Plan> plans = new HashMap<>();

    Gemm(CudaContext context) {
        this.context = context;
        this.lt = BlasLt.get();
        context.makeCurrent();
        this.handle = lt.create();
        this.workspace = context.allocate(WORKSPACE_BYTES);
        this.one = arena.allocateFrom(JAVA_FLOAT, 1f);
        this.zero = arena.allocateFrom(JAVA_FLOAT, 0f);
    }

    static int dataType(DType t) {
        return switch (t) {
            case F32 -> BlasLt.R_32F;
            case BF16 -> BlasLt.R_16BF;
            case F16 -> BlasLt.R_16F;
            default -> throw new IllegalArgumentException("cuBLASLt GEMM: weight type " + t + " is not supported (F32, F16, BF16)");
        };
    }

    /** Queues the GEMM; {@code x} holds activations already in {@code type}. */
    void run(Stream stream, DType type, long w, long x, long out, int n, int in, int outF) {
        context.makeCurrent();
        Plan p = plans.computeIfAbsent(new Shape(type, n, in, outF), this::plan);
        lt.matmul(handle, p.desc, one, w, p.a, x, p.b, zero, out, p.d, out, p.d, p.algo,
                workspace.address(), WORKSPACE_BYTES, stream.handle());
    }

    private Plan plan(Shape s) {
        int t = dataType(s.type);
        MemorySegment desc = lt.matmulDescCreate(BlasLt.COMPUTE_32F, BlasLt.R_32F);
        lt.matmulDescSetInt(desc, BlasLt.DESC_TRANSA, BlasLt.OP_T);
        lt.matmulDescSetInt(desc, BlasLt.DESC_TRANSB, BlasLt.OP_N);
        MemorySegment a = lt.matrixLayoutCreate(t, s.in, s.out, s.in);
        MemorySegment b = lt.matrixLayoutCreate(t, s.in, s.n, s.in);
        MemorySegment d = lt.matrixLayoutCreate(BlasLt.R_32F, s.out, s.n, s.out);
        MemorySegment pref = lt.preferenceCreate();
        try (Arena tmp = Arena.ofConfined()) {
            lt.preferenceSetLong(pref, BlasLt.PREF_MAX_WORKSPACE_BYTES, WORKSPACE_BYTES);
            MemorySegment results = tmp.allocate(BlasLt.HEURISTIC_RESULT_BYTES, 8);
            int found = lt.algoGetHeuristic(handle, desc, a, b, d, d, pref, 1, results);
            if (found < 1 || results.get(JAVA_INT, BlasLt.HEURISTIC_STATE_OFFSET) != 0) {
                throw new IllegalStateException("cuBLASLt has no algorithm for " + s.type + " w [" + s.out + ", " + s.in
                        + "] x activations [" + s.n + ", " + s.in + "] -> F32");
            }
            MemorySegment algo = arena.allocate(BlasLt.ALGO_BYTES, 8);
            MemorySegment.copy(results, 0, algo, 0, BlasLt.ALGO_BYTES);
            return new Plan(desc, a, b, d, algo);
        } finally {
            lt.preferenceDestroy(pref);
        }
    }

    @Override
    public void close() {
        context.makeCurrent();
        for (Plan p : plans.values()) {
            lt.matrixLayoutDestroy(p.a);
            lt.matrixLayoutDestroy(p.b);
            lt.matrixLayoutDestroy(p.d);
            lt.matmulDescDestroy(p.desc);
        }
        plans.clear();
        workspace.close();
        lt.destroy(handle);
        arena.close();
    }
}
