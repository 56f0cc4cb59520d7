package dev.lathe.cuda;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.CudaContext;
import dev.lathe.cuda.driver.DeviceBuffer;
import dev.lathe.cuda.driver.Event;
import dev.lathe.cuda.driver.Stream;
import dev.lathe.cuda.internal.BlasLt;
import dev.lathe.cuda.internal.CudaException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * {@code out[n, outF] = x[n, in] @ w[outF, in]^T} through cuBLASLt, float32 accumulation; float32 output, or
 * the weight's 16-bit type where a caller asks for it ({@link #run(Stream, DType, DType, long, long, long, int, int,
 * int, boolean)}).
 *
 * <p>Row-major to cuBLASLt's column-major: w row-major is a column-major {@code [in, outF]} matrix with
 * ld = in, used transposed (op T); x row-major is column-major {@code [in, n]}, used as is; out row-major is
 * column-major {@code [outF, n]} with ld = outF. So D(outF x n) = W^T(outF x in) . X(in x n), the "TN"
 * layout tensor cores like best.
 *
 * <p>Types: cuBLASLt needs A and B in one type, so for BF16/F16 weights the caller hands over activations
 * in the weight type: split into two 16-bit parts for up to 64 rows, rounded beyond (see
 * {@link CudaBackend#linear}); C and D are float32 unless asked otherwise, compute is CUBLAS_COMPUTE_32F. F32 weights run a plain
 * float32 GEMM (no TF32).
 *
 * <p>Algorithms: cuBLASLt's heuristic picks one per shape. With tuning on ({@link #TUNE_PROPERTY}), a shape of
 * at least {@link #TUNE_MIN_ROWS} rows asks for up to {@link #TUNE_CANDIDATES} algorithms instead and, the
 * first time it runs outside a graph capture, times each of them on the call's own operands (see {@link
 * #choose}) and keeps the fastest; the call's result then comes from that algorithm. An algorithm that
 * cuBLASLt refuses to launch is skipped.
 */
final class Gemm implements AutoCloseable {
    /**
     * System property: the bytes of cuBLASLt workspace a GEMM of fewer than {@link #WORKSPACE_FREE_ROWS_PROPERTY}'s rows
     * may use (default 32 MiB, what cuBLAS advises for Hopper).
     */
    static final String WORKSPACE_PROPERTY = "lathe.gemm.workspaceBytes";
    private static final long WORKSPACE_BYTES = Math.max(0L, Long.getLong(WORKSPACE_PROPERTY, 32L << 20));
    /**
     * System property: GEMMs of at least this many rows (default 1024) are planned without workspace. With it, cuBLASLt
     * picks Hopper kernels with a dynamic tile scheduler for the prefill shapes, and queues a 4-byte memset before each
     * of the beta-0 ones; without it, the same tiles with a static schedule and no memset. Measured on an H100 in a
     * 2048-token prefill (Nsight Systems, one call): gate/up 670.2 against 671.5 us, qkv 149.9 against 150.1 us, and
     * the device idle between kernels 0.30-0.62 ms against 0.60-0.87 ms a step (64 memsets and their launch gaps gone).
     * Smaller GEMMs (decode batches), where a dynamic schedule can balance few tiles, keep the workspace.
     */
    static final String WORKSPACE_FREE_ROWS_PROPERTY = "lathe.gemm.workspaceFreeRows";
    private static final int WORKSPACE_FREE_ROWS = Integer.getInteger(WORKSPACE_FREE_ROWS_PROPERTY, 1024);
    /** System property: {@code true} times cuBLASLt's candidate algorithms per shape and keeps the fastest. */
    static final String TUNE_PROPERTY = "lathe.gemm.tune";
    static final int TUNE_MIN_ROWS = 128, TUNE_CANDIDATES = 8;
    /** Timed runs per candidate: enough for about {@link #TUNE_MILLIS} of device time, within these bounds. */
    static final int TUNE_MIN_RUNS = 3, TUNE_MAX_RUNS = 200;
    static final float TUNE_MILLIS = 2f;
    /** Another algorithm replaces the heuristic's choice only when it is faster by more than this fraction. */
    static final float TUNE_MARGIN = 0.03f;

    /** A GEMM problem: weight/activation type, rows, K, output features, and D's type (F32, or the weight type). */
    private record Shape(DType type, int n, int in, int out, DType outType) {
        Shape(DType type, int n, int in, int out) { this(type, n, in, out, DType.F32); }
    }

    private static final class Plan {
        final MemorySegment desc, a, b, d;
        final long workspaceBytes;         // what the plan's algorithms were chosen for (0 or WORKSPACE_BYTES)
        final Arena memory;                // holds the candidates; closed with the plan
        final MemorySegment[] candidates;  // heuristic order; candidates[0] is the heuristic's choice
        boolean timed;                     // the candidates have been timed (one candidate needs no timing)
        int chosen;                        // the index of the algorithm in use

        Plan(MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment d, long workspaceBytes, Arena memory,
             MemorySegment[] candidates) {
            this.desc = desc;
            this.workspaceBytes = workspaceBytes;
            this.a = a;
            this.b = b;
            this.d = d;
            this.memory = memory;
            this.candidates = candidates;
        }
    }

    private final CudaContext context;
    private final BlasLt lt;
    private final MemorySegment handle;
    private final DeviceBuffer workspace;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment one, zero;
    private final Map<Shape, Plan> plans = new HashMap<>();
    private boolean tune = Boolean.getBoolean(TUNE_PROPERTY);

    Gemm(CudaContext context) {
        this.context = context;
        this.lt = BlasLt.get();
        context.makeCurrent();
        this.handle = lt.create();
        this.workspace = context.allocate(Math.max(WORKSPACE_BYTES, 256));
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

    /**
     * Turns tuning on or off; returns the old setting. A change forgets every plan, so each shape is planned
     * (and, with tuning on, timed) again when next met. Graphs recorded earlier keep what they recorded.
     */
    boolean tune(boolean on) {
        boolean old = tune;
        if (on != old) {
            context.makeCurrent();
            plans.values().forEach(this::destroy);
            plans.clear();
        }
        tune = on;
        return old;
    }

    private void destroy(Plan p) {
        destroy(p.desc, p.a, p.b, p.d);
        p.memory.close();
    }

    private void destroy(MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment d) {
        lt.matrixLayoutDestroy(a);
        lt.matrixLayoutDestroy(b);
        lt.matrixLayoutDestroy(d);
        lt.matmulDescDestroy(desc);
    }

    /**
     * Queues the GEMM; {@code x} holds activations already in {@code type}. {@code mayTime}: the stream is not
     * being captured, so a shape waiting to be tuned may be timed now (which waits for the device).
     */
    void run(Stream stream, DType type, long w, long x, long out, int n, int in, int outF, boolean mayTime) {
        run(stream, type, DType.F32, w, x, out, n, in, outF, mayTime);
    }

    /** As {@link #run(Stream, DType, long, long, long, int, int, int, boolean)}, D stored as {@code outType} (F32 or {@code type}). */
    void run(Stream stream, DType type, DType outType, long w, long x, long out, int n, int in, int outF, boolean mayTime) {
        run(stream, type, outType, w, x, out, n, in, outF, mayTime, false);
    }

    /**
     * As above; with {@code accumulate}, D = x w^T + D (beta 1, C the same matrix as D, F32 or {@code type}: the sum is
     * formed in float32 and rounded once) instead of D = x w^T. An accumulating call is timed into a scratch matrix of
     * D's shape (timing runs the product again and again, which must not add into D).
     */
    void run(Stream stream, DType type, DType outType, long w, long x, long out, int n, int in, int outF, boolean mayTime,
             boolean accumulate) {
        if (outType != DType.F32 && outType != type) {
            throw new IllegalArgumentException("GEMM output " + outType + " for " + type + " operands: F32 or " + type);
        }
        context.makeCurrent();
        Plan p = plans.computeIfAbsent(new Shape(type, n, in, outF, outType), this::plan);
        if (!p.timed && mayTime && p.candidates.length > 1) {
            if (accumulate) {
                try (DeviceBuffer scratch = context.allocate((long) n * outF * outType.byteSize())) {
                    choose(p, stream, w, x, scratch.address(), one);
                }
            } else {
                choose(p, stream, w, x, out, zero);
            }
        }
        matmul(p, p.candidates[p.chosen], stream, w, x, out, accumulate ? one : zero);
    }

    /**
     * The number of candidates tuning times for a shape (cuBLASLt's heuristic list, up to {@link #TUNE_CANDIDATES}),
     * planning it for tuning if it was planned without; for tests.
     */
    int candidateCount(DType type, int n, int in, int outF) {
        context.makeCurrent();
        Shape shape = new Shape(type, n, in, outF);
        Plan p = plans.get(shape);
        if (p != null && p.candidates.length == 1 && !p.timed) {
            destroy(plans.remove(shape));
            p = null;
        }
        if (p == null) {
            boolean old = tune;
            tune = true;
            try {
                p = plans.computeIfAbsent(shape, this::plan);
            } finally {
                tune = old;
            }
        }
        return p.candidates.length;
    }

    /** Queues the GEMM with candidate {@code index} of the shape's plan (see {@link #candidateCount}); for tests. */
    void runCandidate(Stream stream, int index, DType type, long w, long x, long out, int n, int in, int outF) {
        context.makeCurrent();
        Plan p = plans.get(new Shape(type, n, in, outF));
        if (p == null) throw new IllegalStateException("no plan for n=" + n + " in=" + in + " out=" + outF + ": call candidateCount first");
        matmul(p, p.candidates[index], stream, w, x, out, zero);
    }

    /** The workspace bytes the plan of an F32-output shape was made for, or -1 where it has none yet; for tests. */
    long plannedWorkspace(DType type, int n, int in, int outF) {
        Plan p = plans.get(new Shape(type, n, in, outF));
        return p == null ? -1 : p.workspaceBytes;
    }

    /** Shapes tuned so far, each with the index of the kept algorithm in cuBLASLt's heuristic order. */
    Map<String, Integer> tunedChoices() {
        Map<String, Integer> out = new HashMap<>();
        plans.forEach((s, p) -> {
            if (p.timed) out.put(s.type + " n=" + s.n + " in=" + s.in + " out=" + s.out + (s.outType == DType.F32 ? "" : " -> " + s.outType), p.chosen);
        });
        return out;
    }

    private void matmul(Plan p, MemorySegment algo, Stream stream, long w, long x, long out, MemorySegment beta) {
        lt.matmul(handle, p.desc, one, w, p.a, x, p.b, beta, out, p.d, out, p.d, algo,
                workspace.address(), p.workspaceBytes, stream.handle());
    }

    /**
     * Times every candidate on the call's operands: a warm-up run, a probe run that sets how many runs make
     * about {@link #TUNE_MILLIS} of device time (so that the host's launch cost does not decide), then those
     * runs. The heuristic's choice is kept unless another is faster by more than {@link #TUNE_MARGIN}.
     */
    private void choose(Plan p, Stream stream, long w, long x, long out, MemorySegment beta) {
        float best = Float.POSITIVE_INFINITY;
        int bestIndex = -1;
        try (Event start = context.createEvent(); Event end = context.createEvent()) {
            for (int i = 0; i < p.candidates.length; i++) {
                float perRun;
                try {
                    matmul(p, p.candidates[i], stream, w, x, out, beta);
                    float probe = timedRuns(p, p.candidates[i], stream, w, x, out, beta, start, end, 1);
                    int runs = Math.clamp((int) Math.ceil(TUNE_MILLIS / Math.max(probe, 1e-3f)), TUNE_MIN_RUNS, TUNE_MAX_RUNS);
                    perRun = timedRuns(p, p.candidates[i], stream, w, x, out, beta, start, end, runs) / runs;
                } catch (CudaException e) {
                    // cublasLtMatmul refusing this algorithm queues nothing; anything else (an event, a device fault
                    // from this or earlier work) is not about the candidate and must surface
                    if (!"cublasLtMatmul".equals(e.function())) throw e;
                    stream.synchronize();
                    continue;
                }
                if (bestIndex < 0 || perRun < best * (1 - TUNE_MARGIN)) {
                    best = perRun;
                    bestIndex = i;
                }
            }
        }
        if (bestIndex < 0) throw new IllegalStateException("none of cuBLASLt's " + p.candidates.length + " candidate algorithms ran");
        p.chosen = bestIndex;
        p.timed = true;
    }

    /** Milliseconds of {@code runs} back-to-back runs of one algorithm, between two events. */
    private float timedRuns(Plan p, MemorySegment algo, Stream stream, long w, long x, long out, MemorySegment beta, Event start,
                            Event end, int runs) {
        start.record(stream);
        for (int r = 0; r < runs; r++) matmul(p, algo, stream, w, x, out, beta);
        end.record(stream);
        end.synchronize();
        return start.millisTo(end);
    }

    private Plan plan(Shape s) {
        int t = dataType(s.type);
        MemorySegment desc = lt.matmulDescCreate(BlasLt.COMPUTE_32F, BlasLt.R_32F);
        lt.matmulDescSetInt(desc, BlasLt.DESC_TRANSA, BlasLt.OP_T);
        lt.matmulDescSetInt(desc, BlasLt.DESC_TRANSB, BlasLt.OP_N);
        MemorySegment a = lt.matrixLayoutCreate(t, s.in, s.out, s.in);
        MemorySegment b = lt.matrixLayoutCreate(t, s.in, s.n, s.in);
        MemorySegment d = lt.matrixLayoutCreate(dataType(s.outType), s.out, s.n, s.out);
        MemorySegment pref = lt.preferenceCreate();
        Arena memory = Arena.ofShared();
        try (Arena tmp = Arena.ofConfined()) {
            long workspaceBytes = s.n >= WORKSPACE_FREE_ROWS ? 0 : WORKSPACE_BYTES;
            lt.preferenceSetLong(pref, BlasLt.PREF_MAX_WORKSPACE_BYTES, workspaceBytes);
            int requested = tune && s.n >= TUNE_MIN_ROWS ? TUNE_CANDIDATES : 1;
            MemorySegment results = tmp.allocate(BlasLt.HEURISTIC_RESULT_BYTES * requested, 8);
            int found = lt.algoGetHeuristic(handle, desc, a, b, d, d, pref, requested, results);
            java.util.List<MemorySegment> algos = new java.util.ArrayList<>();
            for (int i = 0; i < found; i++) {
                long at = i * BlasLt.HEURISTIC_RESULT_BYTES;
                if (results.get(JAVA_INT, at + BlasLt.HEURISTIC_STATE_OFFSET) != 0) continue;
                MemorySegment algo = memory.allocate(BlasLt.ALGO_BYTES, 8);
                MemorySegment.copy(results, at, algo, 0, BlasLt.ALGO_BYTES);
                algos.add(algo);
            }
            if (algos.isEmpty()) {
                throw new IllegalStateException("cuBLASLt has no algorithm for " + s.type + " w [" + s.out + ", " + s.in
                        + "] x activations [" + s.n + ", " + s.in + "] -> " + s.outType);
            }
            return new Plan(desc, a, b, d, workspaceBytes, memory, algos.toArray(MemorySegment[]::new));
        } catch (RuntimeException e) {
            destroy(desc, a, b, d);
            memory.close();
            throw e;
        } finally {
            lt.preferenceDestroy(pref);
        }
    }

    @Override
    public void close() {
        context.makeCurrent();
        plans.values().forEach(this::destroy);
        plans.clear();
        workspace.close();
        lt.destroy(handle);
        arena.close();
    }
}
