package dev.lathe.cuda;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Mark;
import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;
import dev.lathe.cuda.driver.CudaContext;
import dev.lathe.cuda.driver.DeviceBuffer;
import dev.lathe.cuda.driver.DeviceInfo;
import dev.lathe.cuda.driver.Event;
import dev.lathe.cuda.driver.Kernel;
import dev.lathe.cuda.driver.PinnedBuffer;
import dev.lathe.cuda.driver.Stream;
import dev.lathe.cuda.internal.Driver;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * The NVIDIA GPU backend. All work is queued in order on one stream; {@link #download} waits for it.
 * Uploads and writes are packed into a pinned staging ring and queued, so the caller's array may change
 * right after and the host does not wait for work queued before. Weights stay in their stored format (F32, F16, BF16); activations are F32.
 *
 * <p>Not thread-safe: one thread drives a backend at a time (any thread; the context follows it).
 */
public final class CudaBackend implements Backend {
    /** Pinned bytes for host-to-device copies ({@link StagingRing}); one copy moves at most half of it at a time. */
    private static final long STAGING_BYTES = 32L << 20, STAGING_CHUNK = STAGING_BYTES / 2;
    private static final int NORM_THREADS_MAX = 512;
    static final int MAX_HEAD_DIM = 256;
    /** The most rows the gemv kernels take (gemv8). */
    static final int GEMV_MAX_ROWS = 8;
    /**
     * System property: rows up to which {@link #linear} runs the gemv kernels (0 to 8, default 2); more go to
     * cuBLASLt. In the H100 serving sweep (1024 in / 128 out) the time per output token was 5.9 ms at 1
     * request in flight, 6.7 at 2, 11.0 at 4 (gemv4) and 21.3 at 8 (gemv8), but 9.1 at 16 (cuBLASLt): with n
     * activation rows every weight piece is multiplied with n rows read through L1, which becomes the limit.
     */
    public static final String GEMV_ROWS_PROPERTY = "lathe.gemv.maxRows";
    /**
     * System property: {@code true} keeps a long step's MLP activation in the weight format between its two
     * GEMMs ({@link #mlp}); default true, {@code false} runs the two ops.
     */
    public static final String FUSED_MLP_PROPERTY = "lathe.mlp.fused";
    /**
     * System property: {@code true} (the default) lets the model's norms and attention write a long step's GEMM
     * inputs straight in the weight format ({@link #activationFormat}): the same numbers as a float32 output
     * rounded by {@link #linear}, without the float32 write, its read and the conversion kernel. On an H100 the
     * norms alone took a 2048-token TTFT from 67.6 to 65.9 ms in one call; {@code false} keeps float32.
     */
    public static final String FUSED_NORM_PROPERTY = "lathe.norm.fused";
    /**
     * System property: {@code true} launches the norms of long steps (at least {@link #NORM_NARROW_MIN_ROWS} rows of
     * a width that is a multiple of 4) with as few threads a row as the kernel's float4 path allows, NORM_VEC = 8
     * float4s a thread (128 at width 4096 instead of 512): every thread has eight loads in flight, the block sum
     * spans 4 warps instead of 16, and at the kernel's 50 registers nine rows run on an H100 SM at once instead of two
     * (1,188 rows in flight on the GPU instead of 264). The
     * same formula; only the order in which the sum of squares is added up differs. On by default: the 65 norms of a
     * 2048-token prefill took 1.54 against 1.97 ms on an H100 (same call, with {@link #FLASH_GQA_WARP_ROWS_PROPERTY}
     * 32); {@code false} keeps the wide blocks.
     */
    public static final String NORM_NARROW_PROPERTY = "lathe.norm.narrow";
    /** Rows from which {@link #NORM_NARROW_PROPERTY} applies; fewer (decode) keep the wide blocks. */
    static final int NORM_NARROW_MIN_ROWS = 256;
    /** float4s a thread of rms_norm's vector path (NORM_VEC in norm.cu). */
    private static final int NORM_VEC = 8;
    /**
     * System property: {@code true} lets the fused long-step MLP ({@link #FUSED_MLP_PROPERTY}) keep the gate/up
     * product in the weight format: the GEMM writes 16-bit output and SiLU-and-multiply reads it, half the bytes
     * both ways. Not the same numbers: the product is rounded before the activation (as BF16 inference stacks
     * do). On by default: a 2048-token TTFT of 66.3 against 67.6 ms in one H100 call; {@code false} keeps float32.
     */
    public static final String MLP_GATE16_PROPERTY = "lathe.mlp.gate16";
    /**
     * System property: {@code true} lets a long step's qkv projection write its product in the weight's 16-bit format
     * ({@link #projectionFormat}) for rope_write_kv to read: the GEMM writes half the bytes (not float32 with its
     * wider epilogue) and the rope kernel reads half. Not the same numbers: q and k are rounded once before the
     * rotation (v goes into a cache of that format either way, with the same bits), as BF16 inference stacks
     * compute. On by default ({@code false} keeps float32). On an H100, in a 2048-token prefill: the qkv GEMMs 4.87
     * against 5.16 ms; with {@link #RESIDUAL16_PROPERTY}, against both off in one call, TTFT 50.94 against 53.82 ms
     * and 2048/128 x 300 1,846.3 against 1,813.3 tok/s.
     */
    public static final String QKV16_PROPERTY = "lathe.qkv.out16";
    /**
     * System property: {@code true} holds the residual stream of long steps (where {@link #addsIntoResidual} holds) in the
     * weights' 16-bit format, as BF16 inference stacks do: the embedding writes it, the o projection and the MLP's down
     * projection add into it inside the GEMM (one rounding of residual + product), and the norms read it. Half the
     * bytes of every residual read and write. Decode-size steps keep float32. Changes the numbers: the residual is
     * rounded after every add. On by default ({@code false} keeps float32). On an H100, in a 2048-token prefill: the
     * 65 norms 1.20 against 1.52 ms, the o projections 3.34 against 3.64 ms, the MLPs 33.2 against 33.6 ms (same
     * call); the golden fixtures and every GPU test pass with it on.
     */
    public static final String RESIDUAL16_PROPERTY = "lathe.residual16";
    /** System property: {@code false} runs {@link #linearSiluMul} as linear then siluMul (default true: one kernel). */
    public static final String GEMV_GLU_PROPERTY = "lathe.gemv.glu";
    private static final int GEMV_WARPS = 8;
    /** Rows up to which BF16/F16 {@link #linear} splits activations into two 16-bit parts. */
    static final int SPLIT_MAX_ROWS = 64;
    private static final int ARGMAX_THREADS = 1024;
    /** Query rows per block of the flash kernel (FA_BM in flash_attention.cu). */
    static final int FLASH_TILE_ROWS = 64;
    /**
     * System property: {@code true} runs prefill attention with the grouped-query flash kernel where the query
     * heads per KV head are a multiple of 4: a block's four warps take four heads of one KV head over 32 query
     * rows (16 under {@link #FLASH_GQA_WARP_ROWS_PROPERTY} 16), so each K/V tile is read from the cache once for the
     * four, and the next tile loads while this one
     * is used. On by default: 288.5 against 314.2 us for 2048 queries of one layer on an H100, and 2048/128
     * throughput 1,433 against 1,412 tok/s in the same call; {@code false} keeps the plain kernel.
     */
    public static final String FLASH_GQA_PROPERTY = "lathe.flash.gqa";
    /**
     * System property: the keys of a grouped-query flash tile, 32 (default) or 64. With 64 (flash_attention_gqa_k64_*)
     * each warp has twice the independent mma chains per tile and half the barriers, row-max reductions and rescales
     * per key, at 246 registers a thread (two blocks an H100 SM at head size 128 instead of three). Measured on an H100: no
     * gain (6.55 against 6.35 ms of attention in a 2048-token prefill; 2048/128 x 300 1,708 against 1,718 tok/s).
     */
    public static final String FLASH_GQA_KEYS_PROPERTY = "lathe.flash.gqaKeys";
    /**
     * System property: query rows a warp of the grouped-query flash kernel takes, 32 (default) or 16. With 32
     * (flash_attention_gqa_w32_*, 32-key tiles only) each warp holds two 16-row tiles, keeps their Q rows in shared
     * memory and feeds every K and V fragment it reads from shared memory to two mma instead of one; work items are 32
     * rows, two blocks an H100 SM (255 registers a thread at head size 128, none spilled). No effect with 64-key
     * tiles. Measured on an H100: attention of a 2048-token prefill 5.96 against 7.02 ms (16 rows); with {@link
     * #NORM_NARROW_PROPERTY}, against both off in one call, TTFT 52.80 against 55.47 ms and 2048/128 x 300 1,784.0
     * against 1,757.4 tok/s. (Q rows in shared memory at 16 rows a warp, four blocks an SM, was measured and
     * dropped: 2048/128 x 300 1,734.7 against 1,743.7 tok/s on an H100.)
     */
    public static final String FLASH_GQA_WARP_ROWS_PROPERTY = "lathe.flash.gqaWarpRows";
    /**
     * System property: {@code true} runs the grouped-query flash kernel with S = Q K^T on wgmma where the GPU is an
     * sm_90 (H100/H200) (flash_attention_gqa_wg_*, 16 rows a warp, 32-key tiles): the block's four warps are one
     * warpgroup whose 4 heads x 16 rows are the 64 rows of wgmma.m64n32k16, with Q in registers and the K tile read
     * by the tensor cores from shared memory, so a tile's S costs the warpgroup D / 16 instructions instead of each
     * warp's mma and ldmatrix; P V stays on mma.sync. It runs 16 rows a warp whatever {@link
     * #FLASH_GQA_WARP_ROWS_PROPERTY} says (32 rows need {@link #FLASH_GQA_WGMMA_PV_PROPERTY} as well). On by default
     * (with P V there too); {@code false} keeps every product on mma.sync. Measured alone on an H100 (P V on mma.sync):
     * attention of a 2048-token prefill 6.24 against 6.14 ms for the defaults of then, so alone it is no gain.
     */
    public static final String FLASH_GQA_WGMMA_PROPERTY = "lathe.flash.gqaWgmma";
    /**
     * System property: {@code true} runs O += P V on wgmma as well, where {@link #FLASH_GQA_WGMMA_PROPERTY} applies
     * (flash_attention_gqa_wgv_*): P from the registers, the V tile read MN-major from the same swizzled shared-memory
     * layout as K. With {@link #FLASH_GQA_KEYS_PROPERTY} 64 both run over 64-key tiles (flash_attention_gqa_wgv_k64_*,
     * 194 registers at head size 128, two blocks an SM): half the barriers, fences and waits a key. With 32-key tiles
     * and {@link #FLASH_GQA_WARP_ROWS_PROPERTY} 32 (its default), each warp takes 32 rows: the block's two 64-row
     * tiles (4 heads x 16 rows each) share every K and V tile, Q is read by the tensor cores from shared memory
     * (flash_attention_gqa_wgv_w32_*, 217 registers at head size 128, two blocks an SM); with 16, 16 rows
     * (flash_attention_gqa_wgv_*). On by default. Measured on an H100 against the mma.sync kernel at 32 rows a warp
     * (the default before), in one call: attention of a 2048-token prefill 5.35 against 6.14 ms (16 rows: 5.46; 64-key
     * tiles: 5.70), 2048/128 x 300 1,819.7 against 1,792.6 tok/s; TTFT did not show it through its run-to-run spread
     * (54.16 against 52.61 ms in that call, 51.62 against 52.77 in the profile call).
     */
    public static final String FLASH_GQA_WGMMA_PV_PROPERTY = "lathe.flash.gqaWgmmaPv";
    /**
     * System property: {@code true} runs the wgmma kernel at 32 rows a warp with the softmax of each key tile overlapping
     * the tensor cores' P V of the tile before (flash_attention_gqa_wgo_*, three K/V stages, 242 registers at head size
     * 128, none spilled, two blocks an H100 SM): a tile iteration issues S of its tile and P V of the one before, waits
     * for S only, computes P while P V runs, then waits and rescales O. Applies where the 32-row wgmma kernel does
     * (flash_attention_gqa_wgv_w32_*, two stages). On by default; {@code false} keeps the two-stage kernel
     * that waits for each product. Measured on an H100 (Nsight Systems, 320 launches each, two runs of each in one
     * call, 2048-token prefills): 157.9 and 158.0 against 162.8 and 163.9 us a layer, -3.3%.
     */
    public static final String FLASH_GQA_OVERLAP_PROPERTY = "lathe.flash.gqaOverlap";
    /**
     * System property: {@code true} runs the warp-specialised kernel where the overlapped one would run
     * (flash_attention_gqa_ws_*, sm_90): 384 threads a block, one warpgroup copying 64-key K and V tiles into four
     * stages (cp.async, mbarriers) and two computing ones, 64 query rows each, with the overlapped schedule; one block an
     * SM. Off by default: its GPU tests pass, but on an H100 it was slower than the overlapped kernel in every call that
     * ran both (attention of a 2048-token prefill 5.06-5.52 against 4.78-5.03 ms; Nsight Compute 134.0 against 129.8 us a
     * layer), with one dependent chain a computing warpgroup where the overlapped kernel's warpgroup has two.
     */
    public static final String FLASH_GQA_WARP_SPECIALIZED_PROPERTY = "lathe.flash.gqaWarpSpecialized";
    /**
     * System property: {@code true} lets {@link #ropeAttention} rotate the queries inside the flash kernels as they
     * load them from the 16-bit qkv product, where a flash kernel takes every row of the step (a prefill): rope_write_kv
     * then writes the keys and values only, and the F32 queries (four bytes a value written, then read) are neither
     * written nor read. The rotation is rope_write_kv's arithmetic and the kernels round the queries to the cache
     * type either way, so the results are the same bits. Default true; {@code false}: rope_write_kv writes q as before.
     * On an H100 (one call, `bench latency --profile` of a 2048-token prefill): the layers' rotation, KV write and
     * attention 5.18-5.26 ms a prefill against 5.58 ms as two ops.
     */
    public static final String ROPE_IN_ATTENTION_PROPERTY = "lathe.attention.ropeInKernel";
    /** Threads per block of the flash kernel: FA_WARPS = 4 warps, 16 query rows each. */
    private static final int FLASH_THREADS = 128;
    /** Threads per block of the warp-specialised kernel (WS_THREADS of flash_attention.cu): three warpgroups. */
    private static final int FLASH_WS_THREADS = 384;
    /**
     * A step takes the flash (tensor-core) attention kernel only when some sequence has at least this many
     * query rows. That kernel works on tiles of {@link #FLASH_TILE_ROWS} rows of one sequence; a decode step
     * has one row per sequence, so each tile would hold one row and leave 63 idle, and the row-per-block
     * kernel does the same work with less setup. One full tile is where the tensor cores start to pay.
     */
    static final int FLASH_MIN_QUERY_ROWS = FLASH_TILE_ROWS;
    /**
     * In a step that runs the flash kernel, sequences with at most this many query rows (decode rows beside a
     * prefill) go to the split kernel instead: a flash tile would read the sequence's whole context for each
     * query head to serve one or a few rows.
     */
    static final int SPLIT_MAX_QUERY_RUN = 15;
    /** The flash kernel's grid is (heads, work items); a grid's y extent is at most this. */
    private static final int MAX_GRID_Y = 65535;
    /** split_attention.cu: threads per block, the blocks per SM its context split aims at, its limits. */
    private static final int SPLIT_THREADS = 128, SPLIT_BLOCKS_PER_SM = 4, MAX_SPLITS = 64, SPLIT_MIN_CHUNK = 64;
    /**
     * System property: the most pieces split_attention cuts a context into (1 to 64, default 64). 1 keeps
     * every row in one block. On an H100, one sequence of 2048 tokens took 26 us a layer split against 339 us
     * in one piece (OpTimings).
     */
    public static final String MAX_SPLITS_PROPERTY = "lathe.attention.maxSplits";
    /**
     * System property: {@code true} runs decode attention (the split-context kernel's rows) on tensor cores where
     * the cache is BF16 or F16, the head size 64 or 128 and a KV head serves at most 16 query heads
     * (split_attention_mma: one warp a block, the group's heads as the mma's rows, 32-key tiles). Its numbers are
     * the flash kernels': q and the softmax weights rounded to the cache type. Default true; {@code false} keeps the
     * float32 lane-per-key kernel. On an H100 (one call): 128/128 x 3000 16,667 against 16,009 tok/s, 2048/128 x 300
     * 1,717 against 1,652.
     */
    public static final String MMA_DECODE_PROPERTY = "lathe.attention.mmaDecode";
    /** split_attention_mma: the most query heads per KV head (the mma's 16 rows). */
    static final int MMA_DECODE_MAX_GROUP = 16;
    /**
     * System property: the one-warp blocks per SM that the tensor-core decode kernel's context split aims at (1 to
     * 64, default 8): rows x KV heads below that many blocks per SM are cut into pieces. At head size 128 an H100
     * SM holds about 6 such blocks at once (32 KB of shared memory each), so with 1.5 waves of blocks half of the
     * last wave's places stay empty; a larger aim cuts long contexts into more pieces and evens the waves out, at the
     * cost of the merge. Measured on an H100: 24 gave 16,683 against 16,799 tok/s at 128/128 x 3000, so 8 stays.
     */
    public static final String MMA_DECODE_BLOCKS_PER_SM_PROPERTY = "lathe.attention.mmaBlocksPerSm";
    /**
     * System property: {@code true} launches the split-context kernels with the KV head fastest in the grid, so that
     * the blocks running together read a row's KV heads, which lie side by side in the cache ([slot, kv head, dim]),
     * rather than one KV head of many sequences, 2 KB apart. No number changes. Default false: on an H100 it gave
     * 16,698 against 16,799 tok/s at 128/128 x 3000.
     */
    public static final String HEADS_FASTEST_PROPERTY = "lathe.attention.headsFastest";
    private boolean headsFastest = Boolean.getBoolean(HEADS_FASTEST_PROPERTY);
    private final int mmaDecodeBlocksPerSm = Math.clamp(Integer.getInteger(MMA_DECODE_BLOCKS_PER_SM_PROPERTY, 8), 1, 64);

    private final CudaContext context;
    private final Stream stream;
    private final Kernels kernels;
    private final Gemm gemm;
    private final PinnedBuffer staging;
    private final StagingRing<Event> ring;
    private final java.util.ArrayDeque<Event> freeFences = new java.util.ArrayDeque<>();
    private final java.util.ArrayList<Event> allFences = new java.util.ArrayList<>();
    private final int multiprocessors;
    /** Whether the GPU is an sm_90 (H100/H200), which the wgmma kernels need. */
    private final boolean sm90;
    private final boolean fusedGlu = Boolean.parseBoolean(System.getProperty(GEMV_GLU_PROPERTY, "true"));
    private boolean fusedMlp = Boolean.parseBoolean(System.getProperty(FUSED_MLP_PROPERTY, "true"));
    private boolean fusedNorm = Boolean.parseBoolean(System.getProperty(FUSED_NORM_PROPERTY, "true"));
    private boolean narrowNorm = Boolean.parseBoolean(System.getProperty(NORM_NARROW_PROPERTY, "true"));
    private boolean mlpGate16 = Boolean.parseBoolean(System.getProperty(MLP_GATE16_PROPERTY, "true"));
    private boolean qkv16 = Boolean.parseBoolean(System.getProperty(QKV16_PROPERTY, "true"));
    private boolean residual16 = Boolean.parseBoolean(System.getProperty(RESIDUAL16_PROPERTY, "true"));
    private int gemvMaxRows = Math.clamp(Integer.getInteger(GEMV_ROWS_PROPERTY, 2), 0, GEMV_MAX_ROWS);
    private int maxSplits = Math.clamp(Integer.getInteger(MAX_SPLITS_PROPERTY, MAX_SPLITS), 1, MAX_SPLITS);
    private boolean mmaDecode = Boolean.parseBoolean(System.getProperty(MMA_DECODE_PROPERTY, "true"));
    /** The last split-context launch (for {@link #lastDecodeLaunch}): pieces (0: none), tensor cores, KV head first. */
    private int lastDecodePieces;
    private boolean lastDecodeMma, lastDecodeKvFirst;
    private final BufferPool pool;
    /**
     * Buffers of the tensors allocated while capturing graphs: kept apart from {@link #pool}, so that work
     * queued between replays never holds memory a replay writes. Graphs never run concurrently (one stream)
     * and each recomputes its intermediates before reading them, so the graphs share this pool.
     */
    private final BufferPool graphPool;
    private BufferPool allocating;  // pool or, during a capture, graphPool
    /**
     * The flash kernel's work list for the last metadata seen (by identity: one metadata object serves every
     * layer of a step), so it is built and uploaded once per step, not once per layer.
     */
    private AttentionMetadata planFor;
    private int planLongestRun, planItems, planShortRows, planTileRows;
    private boolean flashGqa = Boolean.parseBoolean(System.getProperty(FLASH_GQA_PROPERTY, "true"));
    private boolean ropeInAttention = Boolean.parseBoolean(System.getProperty(ROPE_IN_ATTENTION_PROPERTY, "true"));
    private int flashGqaKeys = gqaKeys(Integer.getInteger(FLASH_GQA_KEYS_PROPERTY, 32));
    private boolean flashGqaOverlap = Boolean.parseBoolean(System.getProperty(FLASH_GQA_OVERLAP_PROPERTY, "true"));
    private boolean flashGqaWarpSpecialized = Boolean.parseBoolean(System.getProperty(FLASH_GQA_WARP_SPECIALIZED_PROPERTY, "false"));
    private int flashGqaWarpRows = gqaWarpRows(Integer.getInteger(FLASH_GQA_WARP_ROWS_PROPERTY, 32));
    private boolean flashGqaWgmma = Boolean.parseBoolean(System.getProperty(FLASH_GQA_WGMMA_PROPERTY, "true"));
    private boolean flashGqaWgmmaPv = Boolean.parseBoolean(System.getProperty(FLASH_GQA_WGMMA_PV_PROPERTY, "true"));
    private String lastFlashKernel = "none";
    private boolean planUploaded;
    private DeviceBuffer planWork;
    private boolean closed;

    /** A backend on GPU {@code ordinal}. */
    public CudaBackend(int ordinal) {
        this.context = CudaContext.open(ordinal);
        this.pool = new BufferPool(context);
        this.graphPool = new BufferPool(context, true);
        DeviceInfo info = context.info();
        this.multiprocessors = info.multiprocessors();
        this.sm90 = info.computeMajor() == 9 && info.computeMinor() == 0;
        this.allocating = pool;
        Stream s = null;
        Kernels k = null;
        Gemm g = null;
        PinnedBuffer st = null;
        try {
            s = context.createStream();
            k = new Kernels(context);
            g = new Gemm(context);
            st = context.allocatePinned(STAGING_BYTES);
        } catch (RuntimeException | Error e) {
            if (st != null) st.close();
            if (g != null) g.close();
            if (k != null) k.close();
            if (s != null) s.close();
            context.close();
            throw e;
        }
        this.stream = s;
        this.kernels = k;
        this.gemm = g;
        this.staging = st;
        this.ring = new StagingRing<>(STAGING_BYTES, new StagingRing.Fences<>() {
            @Override
            public Event record() {
                Event e = freeFences.pollFirst();
                if (e == null) {
                    e = context.createEvent();
                    allFences.add(e);
                }
                e.record(stream);
                return e;
            }

            @Override
            public void await(Event fence) { fence.synchronize(); }

            @Override
            public boolean isComplete(Event fence) { return fence.isComplete(); }

            @Override
            public void recycle(Event fence) { freeFences.addLast(fence); }
        });
    }

    @Override
    public String name() { return "cuda"; }

    public DeviceInfo device() { return context.info(); }

    CudaContext context() { return context; }

    Stream stream() { return stream; }

    /** Waits for all queued work. */
    public void synchronize() { stream.synchronize(); }

    /** A CUDA event recorded on the stream: {@link Mark#millisTo} is the device time between two of them. */
    @Override
    public Mark mark() {
        if (capturing()) throw new IllegalStateException("mark: not inside a graph capture");
        Event e = context.createEvent();
        e.record(stream);
        return new EventMark(e);
    }

    private record EventMark(Event event) implements Mark {
        @Override
        public double millisTo(Mark later) {
            if (!(later instanceof EventMark l)) throw new IllegalArgumentException("millisTo: a CUDA mark against " + later);
            l.event.synchronize();
            return event.millisTo(l.event);
        }

        @Override
        public void close() { event.close(); }
    }

    // ---- memory -------------------------------------------------------------------------------

    @Override
    public Tensor allocate(DType dtype, int rows, int cols) {
        if (rows < 0 || cols < 0) throw new IllegalArgumentException("allocate: shape [" + rows + ", " + cols + "] is negative");
        if (dtype != DType.F32 && dtype != DType.I32 && dtype != DType.F16 && dtype != DType.BF16) {
            throw new IllegalArgumentException("allocate: cuda tensors are F32, I32, F16 or BF16, not " + dtype);
        }
        BufferPool from = allocating;
        return new CudaTensor(from.obtain((long) rows * cols * dtype.byteSize()), dtype, rows, cols, from::recycle);
    }

    /** Queued like {@link #write}: the data is packed at once, and the host does not wait for the stream. */
    @Override
    public Tensor upload(float[] data, int rows, int cols) {
        checkCount("upload", data.length, rows, cols);
        CudaTensor t = (CudaTensor) allocate(DType.F32, rows, cols);
        queueCopyIn(MemorySegment.ofArray(data), t.buffer(), 0);
        return t;
    }

    /** Queued like {@link #write}: the data is packed at once, and the host does not wait for the stream. */
    @Override
    public Tensor upload(int[] data, int rows, int cols) {
        checkCount("upload", data.length, rows, cols);
        CudaTensor t = (CudaTensor) allocate(DType.I32, rows, cols);
        queueCopyIn(MemorySegment.ofArray(data), t.buffer(), 0);
        return t;
    }

    /**
     * One pooled buffer and one queued copy ({@link #queueCopyIn}) for all of them, each array from a 256-byte boundary;
     * inside a graph capture, where nothing may be copied in, the default (which refuses as {@link #upload} does). The
     * buffer goes back to the pool when the last of the tensors is closed.
     */
    @Override
    public Tensor[] uploadInts(int[][] data, int[] rows, int[] cols) {
        if (capturing() || rows.length != data.length || cols.length != data.length) {
            return Backend.super.uploadInts(data, rows, cols);
        }
        int align = (int) (StagingRing.ALIGN / 4);  // in ints
        int[] at = new int[data.length];
        int total = 0;
        for (int i = 0; i < data.length; i++) {
            checkCount("uploadInts", data[i].length, rows[i], cols[i]);
            at[i] = total;
            total += (data[i].length + align - 1) / align * align;
        }
        int[] packed = new int[total];
        for (int i = 0; i < data.length; i++) System.arraycopy(data[i], 0, packed, at[i], data[i].length);
        BufferPool from = allocating;
        DeviceBuffer buffer = from.obtain(4L * total);
        try {
            queueCopyIn(MemorySegment.ofArray(packed), buffer, 0);
        } catch (RuntimeException e) {
            from.recycle(buffer);
            throw e;
        }
        int[] open = {data.length};
        java.util.function.Consumer<DeviceBuffer> release = b -> {
            if (--open[0] == 0) from.recycle(b);
        };
        Tensor[] out = new Tensor[data.length];
        for (int i = 0; i < data.length; i++) out[i] = new CudaTensor(buffer, 4L * at[i], DType.I32, rows[i], cols[i], release);
        return out;
    }

    private static void checkCount(String op, int length, int rows, int cols) {
        if ((long) rows * cols != length || rows < 0 || cols < 0) {
            throw new IllegalArgumentException(op + ": " + length + " values do not fill [" + rows + ", " + cols + "]");
        }
    }

    @Override
    public Optional<Memory> memory() {
        context.makeCurrent();
        long[] m = context.memoryInfo();
        return Optional.of(new Memory(m[0], m[1]));
    }

    // ---- graphs -------------------------------------------------------------------------------

    @Override
    public boolean supportsGraphs() { return true; }

    /**
     * Stream capture in relaxed mode (buffers may be allocated while capturing); the ops' allocations come
     * from {@link #graphPool}, which never frees a buffer, so every address a graph holds stays valid while
     * the backend lives. GEMM plans should exist already (run the same ops once uncaptured first), so that
     * nothing but recording happens during the capture.
     */
    @Override
    public Graph capture(Runnable ops) {
        if (allocating != pool) throw new IllegalStateException("capture: already capturing");
        drain();
        context.makeCurrent();
        var driver = context.driver();
        driver.streamBeginCapture(stream.handle(), Driver.CAPTURE_MODE_RELAXED);
        MemorySegment graph;
        allocating = graphPool;
        try {
            ops.run();
        } catch (RuntimeException | Error e) {
            try {
                driver.graphDestroy(driver.streamEndCapture(stream.handle()));
            } catch (RuntimeException ignored) {
                // the capture was invalid already; the ops' error is the one to report
            }
            throw e;
        } finally {
            allocating = pool;
        }
        graph = driver.streamEndCapture(stream.handle());
        MemorySegment exec;
        try {
            exec = driver.graphInstantiate(graph);
        } catch (RuntimeException e) {
            driver.graphDestroy(graph);
            throw e;
        }
        return new CudaGraph(graph, exec);
    }

    private final class CudaGraph implements Graph {
        private final MemorySegment graph, exec;
        private boolean closed;

        CudaGraph(MemorySegment graph, MemorySegment exec) {
            this.graph = graph;
            this.exec = exec;
        }

        @Override
        public void replay() {
            if (closed) throw new IllegalStateException("graph was closed");
            context.makeCurrent();
            context.driver().graphLaunch(exec, stream.handle());
        }

        @Override
        public void close() {
            if (closed) return;
            closed = true;
            context.makeCurrent();
            stream.synchronize();
            context.driver().graphExecDestroy(exec);
            context.driver().graphDestroy(graph);
        }
    }

    @Override
    public void write(Tensor dst, int[] data) {
        CudaTensor t = ints(dst, "write", "dst");
        if (data.length > t.size()) throw new IllegalArgumentException("write: " + data.length + " values into " + t.shape());
        queueCopyIn(MemorySegment.ofArray(data), t.buffer(), t.offset());
    }

    @Override
    public void write(Tensor dst, float[] data) {
        CudaTensor t = floats(dst, "write", "dst");
        if (data.length > t.size()) throw new IllegalArgumentException("write: " + data.length + " values into " + t.shape());
        queueCopyIn(MemorySegment.ofArray(data), t.buffer(), t.offset());
    }

    @Override
    public float[] download(Tensor t) {
        CudaTensor c = cuda(t, "download", "t");
        if (c.dtype() != DType.F32) throw new IllegalArgumentException("download: tensor is " + c.dtype() + ", not F32");
        float[] out = new float[Math.toIntExact(c.size())];
        copyOut(c, MemorySegment.ofArray(out));
        return out;
    }


    /**
     * Host bytes to the device through the staging ring, in chunks of at most half of it: while chunk i copies,
     * chunk i+1 is packed. Returns once every byte has arrived.
     */
    private void copyIn(MemorySegment src, DeviceBuffer dst, long dstOffset) {
        queueCopyIn(src, dst, dstOffset);
        drain();
    }

    /**
     * Queues the copy of {@code src} through the staging ring and returns without waiting for the device: the
     * bytes are packed into pinned memory first, so the caller may change {@code src} at once, and work queued
     * later on the stream sees them. Only a copy that laps the ring while its oldest ranges are still queued
     * waits, for those ranges' copies.
     */
    private void queueCopyIn(MemorySegment src, DeviceBuffer dst, long dstOffset) {
        if (capturing()) {
            // a captured copy would read its staging range again at every replay, long after it was reused
            throw new IllegalStateException("cuda backend: host data cannot be copied inside a graph capture; "
                    + "write it into a tensor the graph reads before replaying the graph");
        }
        long total = src.byteSize();
        MemorySegment buf = staging.segment();
        for (long done = 0; done < total; done += STAGING_CHUNK) {
            long n = Math.min(STAGING_CHUNK, total - done);
            long at = ring.reserve(n);
            try {
                MemorySegment.copy(src, done, buf, at, n);
                stream.copyToDevice(dst, dstOffset + done, buf.asSlice(at, n), n);
            } finally {
                ring.queued();  // also when the copy failed: a fence on nothing queued is harmless, a range left unfenced is not
            }
        }
    }

    /** Waits for the stream; then every staging range is free again. */
    private void drain() {
        stream.synchronize();
        ring.drained();
    }

    private void copyOut(CudaTensor src, MemorySegment dst) { copyOut(src.buffer(), src.offset(), src.bytes(), dst); }

    private void copyOut(DeviceBuffer src, long total, MemorySegment dst) { copyOut(src, 0, total, dst); }

    /** {@code total} bytes from byte {@code from} of {@code src} to the host. */
    private void copyOut(DeviceBuffer src, long from, long total, MemorySegment dst) {
        MemorySegment buf = staging.segment();
        for (long done = 0; done < total; done += STAGING_CHUNK) {
            long n = Math.min(STAGING_CHUNK, total - done);
            long at = ring.reserve(n);
            try {
                stream.copyToHost(buf.asSlice(at, n), src, from + done, n);
            } finally {
                ring.queued();  // as in queueCopyIn: never leave the range unfenced
            }
            drain();
            MemorySegment.copy(buf, at, dst, done, n);
        }
        if (total == 0) {
            drain();
        }
    }

    @Override
    public Weight load(WeightTensor t) {
        int[] shape = t.matrixShape();
        checkWeightType(t.dtype(), t.name());
        DeviceBuffer buf = context.allocate(t.data().byteSize());
        try {
            copyIn(t.data(), buf, 0);
        } catch (RuntimeException | Error e) {
            buf.close();
            throw e;
        }
        return new CudaWeight(t.name(), buf, t.dtype(), shape[0], shape[1]);
    }

    @Override
    public Weight loadFused(String name, List<WeightTensor> parts) {
        if (parts.isEmpty()) throw new IllegalArgumentException("loadFused '" + name + "': no parts");
        WeightTensor first = parts.getFirst();
        checkWeightType(first.dtype(), first.name());
        int cols = first.matrixShape()[1];
        long rows = 0;
        for (WeightTensor t : parts) {
            int[] shape = t.matrixShape();
            if (t.dtype() != first.dtype() || shape[1] != cols) {
                throw new IllegalArgumentException("loadFused '" + name + "': part '" + t.name() + "' is " + t.dtype()
                        + " " + t.shapeString() + " but '" + first.name() + "' is " + first.dtype() + " "
                        + first.shapeString() + "; fused parts need one dtype and one column count");
            }
            rows += shape[0];
        }
        if (rows > Integer.MAX_VALUE) throw new IllegalArgumentException("loadFused '" + name + "': " + rows + " rows is too many");
        DeviceBuffer buf = context.allocate(rows * cols * first.dtype().byteSize());
        try {
            long offset = 0;
            for (WeightTensor t : parts) {
                copyIn(t.data(), buf, offset);
                offset += t.data().byteSize();
            }
        } catch (RuntimeException | Error e) {
            buf.close();
            throw e;
        }
        return new CudaWeight(name, buf, first.dtype(), (int) rows, cols);
    }

    /** Generated on the GPU by a port of {@link dev.lathe.core.backend.SeededRandom}: value i is mean + std * normal(seed, i). */
    @Override
    public Weight random(String name, DType dtype, int rows, int cols, long seed, float mean, float std) {
        checkWeightType(dtype, name);
        if (rows <= 0 || cols <= 0) {
            throw new IllegalArgumentException("random '" + name + "': shape [" + rows + ", " + cols + "] must be positive");
        }
        long count = (long) rows * cols;
        DeviceBuffer buf = context.allocate(count * dtype.byteSize());
        kernels.randomNormal.launch(stream, Kernels.elementBlocks(count), 1, 256,
                buf.address(), seed, count, mean, std, dtypeCode(dtype));
        return new CudaWeight(name, buf, dtype, rows, cols);
    }

    @Override
    public KvCache allocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16) {
            throw new IllegalArgumentException("cuda backend: KV cache dtype " + dtype + " is not supported (use F32, F16 or BF16)");
        }
        if (numLayers <= 0 || numBlocks <= 0 || blockSize <= 0 || numKvHeads <= 0 || headDim <= 0) {
            throw new IllegalArgumentException("cuda backend: KV cache sizes must be positive: layers=" + numLayers
                    + " blocks=" + numBlocks + " blockSize=" + blockSize + " kvHeads=" + numKvHeads + " headDim=" + headDim);
        }
        long bytes = 2L * numLayers * CudaKvCache.bytesPerLayerTensor(numBlocks, blockSize, numKvHeads, headDim, dtype);
        return new CudaKvCache(context.allocate(bytes), numLayers, numBlocks, blockSize, numKvHeads, headDim, dtype);
    }

    private static void checkWeightType(DType t, String name) {
        if (t != DType.F32 && t != DType.F16 && t != DType.BF16) {
            throw new IllegalArgumentException("cuda backend: weight '" + name + "' is " + t + "; supported formats are F32, F16 and BF16");
        }
    }



    /** Kernel code of a storage format; matches DT_* in common.cuh. */
    static int dtypeCode(DType t) {
        return switch (t) {
            case F32 -> 0;
            case F16 -> 1;
            case BF16 -> 2;
            default -> throw new IllegalArgumentException("no kernel storage format for " + t);
        };
    }

    // ---- ops --------------------------------------------------------------------------------

    /** Token ids outside the table give rows of NaN (ids live on the device and are not checked here). */
    @Override
    public void embedding(Weight table, Tensor ids, Tensor out) {
        CudaWeight w = cuda(table);
        CudaTensor it = ints(ids, "embedding", "ids"), ot = activations(out, "embedding", "out");
        if (it.rows() != 1 || ot.rows() != it.cols() || ot.cols() != w.cols()) {
            throw shapes("embedding", "ids " + it.shape() + ", table '" + w.name() + "' " + w.shape() + ", out " + ot.shape(),
                    "ids must be [1, n] and out [n, table.cols]");
        }
        if (ot.size() == 0) return;
        kernels.embedding.launch(stream, ot.rows(), 1, 256,
                it.address(), w.address(), ot.address(), ot.rows(), ot.cols(), w.rows(), dtypeCode(w.dtype()), dtypeCode(ot.dtype()));
    }

    @Override
    public void rmsNorm(Tensor x, Weight weight, float eps, Tensor out) {
        CudaTensor xt = activations(x, "rmsNorm", "x"), ot = activations(out, "rmsNorm", "out");
        CudaWeight w = cuda(weight);
        checkNormShapes("rmsNorm", xt, ot, w);
        norm(0L, xt, w, eps, ot);
    }

    @Override
    public void addRmsNorm(Tensor residual, Tensor x, Weight weight, float eps, Tensor out) {
        CudaTensor rt = floats(residual, "addRmsNorm", "residual"), xt = floats(x, "addRmsNorm", "x");
        CudaTensor ot = activations(out, "addRmsNorm", "out");
        CudaWeight w = cuda(weight);
        if (!sameShape(rt, xt)) {
            throw shapes("addRmsNorm", "residual " + rt.shape() + ", x " + xt.shape(), "residual and x must have one shape");
        }
        checkNormShapes("addRmsNorm", rt, ot, w);
        norm(rt.address(), xt, w, eps, ot);
    }

    private void norm(long residual, CudaTensor x, CudaWeight w, float eps, CudaTensor out) {
        long groups = x.size() / w.cols();
        if (groups == 0) return;
        kernels.rmsNorm.launch(stream, Math.toIntExact(groups), 1, normThreads(groups, w.cols()),
                residual, x.address(), w.address(), out.address(), (int) groups, w.cols(), dtypeCode(w.dtype()), eps,
                dtypeCode(out.dtype()), dtypeCode(x.dtype()));
    }

    /**
     * Threads a row of rms_norm: one per element up to {@link #NORM_THREADS_MAX}; under {@link #NORM_NARROW_PROPERTY}, for
     * long steps of a width that is a multiple of 4, the fewest (a multiple of 32) that cover it with NORM_VEC float4s
     * each, which the kernel's float4 path takes.
     */
    int normThreads(long rows, int d) {
        int wide = Math.min(NORM_THREADS_MAX, Math.max(32, (d + 31) / 32 * 32));
        if (!narrowNorm || rows < NORM_NARROW_MIN_ROWS || d % 4 != 0) return wide;
        int perThread = 4 * NORM_VEC;
        int narrow = Math.max(32, ((d + perThread - 1) / perThread + 31) / 32 * 32);
        return Math.min(wide, narrow);
    }

    /** Turns {@link #NORM_NARROW_PROPERTY} on or off; returns the old setting. */
    boolean narrowNorm(boolean on) {
        boolean old = narrowNorm;
        narrowNorm = on;
        return old;
    }

    private static void checkNormShapes(String op, CudaTensor x, CudaTensor out, CudaWeight w) {
        if (!sameShape(x, out) || w.rows() != 1 || x.cols() % w.cols() != 0) {
            throw shapes(op, "x " + x.shape() + ", weight '" + w.name() + "' " + w.shape() + ", out " + out.shape(),
                    "out must match x and x.cols be a multiple of the [1, d] weight's d");
        }
    }

    /**
     * Three paths, by row count n, so that activations keep float32 precision wherever that costs no time:
     * <ul>
     *   <li>n up to {@link #gemvMaxRows()} (decode): the gemv kernel, float32 activations, bias fused;</li>
     *   <li>BF16/F16 weights and n up to {@link #SPLIT_MAX_ROWS}: each activation is split into a 16-bit
     *       high and low part and one cuBLASLt GEMM runs over the 2n rows; the product is still bound by
     *       reading the weights once, and the result carries ~16 mantissa bits of x instead of 8;</li>
     *   <li>otherwise (long prefills, where the GEMM is compute-bound): x rounded to the weight type, one
     *       GEMM (see {@link Gemm}), as BF16 inference stacks do. An x that arrives in the weight type already
     *       ({@link #activationFormat}: a norm wrote it so) goes to the GEMM as it is.</li>
     * </ul>
     */
    @Override
    public void linear(Tensor x, Weight w, Weight bias, Tensor out) {
        CudaTensor xt = activations(x, "linear", "x"), ot = activations(out, "linear", "out");
        CudaWeight wt = cuda(w), bt = bias(bias, wt, "linear");
        if (xt.cols() != wt.cols() || ot.rows() != xt.rows() || ot.cols() != wt.rows()) {
            throw shapes("linear", "x " + xt.shape() + ", w '" + wt.name() + "' " + wt.shape() + ", out " + ot.shape(),
                    "need x [n, in], w [out, in], out [n, out]");
        }
        int n = xt.rows();
        if (n == 0) return;
        if (xt.dtype() != DType.F32 && (xt.dtype() != wt.dtype() || n <= SPLIT_MAX_ROWS)) {
            throw new IllegalArgumentException("linear: x is " + xt.dtype() + " with " + n + " rows for w '" + wt.name()
                    + "' of " + wt.dtype() + "; x must be F32, or in w's format with more than " + SPLIT_MAX_ROWS
                    + " rows (see activationFormat)");
        }
        if (ot.dtype() != DType.F32) {
            // the 16-bit product of projectionFormat: one GEMM writing the weight's format, no bias
            if (ot.dtype() != projectionFormat(w, n) || bt != null) {
                throw new IllegalArgumentException("linear: out is " + ot.dtype() + " for w '" + wt.name() + "' of "
                        + wt.dtype() + (bt != null ? " with a bias" : "") + " over " + n + " rows; out must be F32, or w's "
                        + "16-bit format without a bias where projectionFormat says so");
            }
            gemmLinear(xt, wt, null, ot, false);
            return;
        }
        if (n <= gemvMaxRows) {
            Kernel k = n == 1 ? kernels.gemv1 : n == 2 ? kernels.gemv2 : n <= 4 ? kernels.gemv4 : kernels.gemv8;
            gemv(k, xt, wt, bt, ot);
            return;
        }
        // the 16-bit copies of x are pooled tensors, not one shared scratch buffer: a recorded graph keeps the
        // addresses it was captured with, and a scratch buffer grown (freed and reallocated) later would leave
        // it writing into freed memory; pooled buffers are never freed while the backend lives
        if (wt.dtype() != DType.F32 && n <= SPLIT_MAX_ROWS) {
            long count = xt.size();
            try (CudaTensor split = (CudaTensor) allocate(wt.dtype(), 2 * n, xt.cols());
                 CudaTensor both = (CudaTensor) allocate(DType.F32, 2 * n, wt.rows())) {
                kernels.splitFromF32.launch(stream, Kernels.elementBlocks(count), 1, 256,
                        xt.address(), split.address(), count, dtypeCode(wt.dtype()));
                gemm.run(stream, wt.dtype(), wt.address(), split.address(), both.address(), 2 * n, wt.cols(), wt.rows(), !capturing());
                kernels.sumHalves.launch(stream, Kernels.elementBlocks(ot.size()), 1, 256,
                        both.address(), ot.address(), bt == null ? 0L : bt.address(), (long) n, wt.rows(),
                        bt == null ? 0 : dtypeCode(bt.dtype()));
            }
            return;
        }
        gemmLinear(xt, wt, bt, ot, false);
    }

    /** {@code bias} as a [1, w.rows] CUDA weight, or null; {@code op} names the caller in the error. */
    private static CudaWeight bias(Weight bias, CudaWeight wt, String op) {
        if (bias == null) return null;
        CudaWeight bt = cuda(bias);
        if (bt.rows() != 1 || bt.cols() != wt.rows()) {
            throw shapes(op, "w '" + wt.name() + "' " + wt.shape() + ", bias '" + bt.name() + "' " + bt.shape(), "bias must be [1, w.rows]");
        }
        return bt;
    }

    /**
     * The GEMM path of {@link #linear} and {@link #linearAdd}: x in the weight's format (as given: F32 weights, or
     * a norm wrote it so; else rounded into a pooled copy), one cuBLASLt GEMM writing (or, {@code accumulate},
     * adding into) out, F32 or (projectionFormat, no bias) the weight's format, then the bias. Accumulating with a
     * bias, the product and its bias go to a pooled tensor first and are added into out after, so that
     * out + (product + bias) rounds as the unfused ops do.
     */
    private void gemmLinear(CudaTensor xt, CudaWeight wt, CudaWeight bt, CudaTensor ot, boolean accumulate) {
        if (accumulate && bt != null) {
            // out + (x w^T + b), the order of the unfused ops: the product takes its bias before the residual does
            try (CudaTensor product = (CudaTensor) allocate(DType.F32, ot.rows(), ot.cols())) {
                gemmLinear(xt, wt, bt, product, false);
                addInto(ot, product);
            }
            return;
        }
        try (CudaTensor converted = inFormat(xt, wt.dtype())) {
            long xa = converted != null ? converted.address() : xt.address();
            gemm.run(stream, wt.dtype(), ot.dtype(), wt.address(), xa, ot.address(), xt.rows(), wt.cols(), wt.rows(), !capturing(),
                    accumulate);
        }
        if (bt != null) {
            kernels.biasAdd.launch(stream, Kernels.elementBlocks(ot.size()), 1, 256,
                    ot.address(), bt.address(), (long) ot.rows(), ot.cols(), dtypeCode(bt.dtype()));
        }
    }

    /**
     * A float32 x rounded to {@code dtype} in a pooled copy the caller closes (queued, not waited for), or null when x
     * is in {@code dtype} already and the caller uses it as it is.
     */
    private CudaTensor inFormat(CudaTensor xt, DType dtype) {
        if (xt.dtype() == dtype) return null;
        CudaTensor c = (CudaTensor) allocate(dtype, xt.rows(), xt.cols());
        kernels.convertFromF32.launch(stream, Kernels.elementBlocks(xt.size()), 1, 256,
                xt.address(), c.address(), xt.size(), dtypeCode(dtype));
        return c;
    }

    /** A copy of a float32 tensor rounded to the 16-bit {@code dtype} (for tests that need such inputs). */
    Tensor rounded(Tensor f32, DType dtype) {
        if (dtype == DType.F32) throw new IllegalArgumentException("rounded: " + dtype + " is not a 16-bit format");
        return inFormat(floats(f32, "rounded", "f32"), dtype);
    }

    /** Whether a graph capture is under way (work is recorded, not run). */
    private boolean capturing() { return allocating != pool; }

    /** Turns cuBLASLt algorithm timing on or off for GEMM shapes met from now on (see {@link Gemm}); returns the old setting. */
    boolean gemmTuning(boolean on) { return gemm.tune(on); }

    /** How many GEMM candidates tuning would time for x [n, w.cols] x w^T; for tests. */
    int gemmCandidates(Weight w, int n) {
        CudaWeight wt = cuda(w);
        return gemm.candidateCount(wt.dtype(), n, wt.cols(), wt.rows());
    }

    /**
     * {@code out = x w^T} through GEMM candidate {@code index} (see {@link #gemmCandidates}), for 16-bit weights and
     * more than {@link #SPLIT_MAX_ROWS} rows; for tests.
     */
    void linearWithCandidate(Tensor x, Weight w, Tensor out, int index) {
        CudaTensor xt = floats(x, "linear", "x"), ot = floats(out, "linear", "out");
        CudaWeight wt = cuda(w);
        int n = xt.rows();
        if (wt.dtype() == DType.F32 || n <= SPLIT_MAX_ROWS) throw new IllegalArgumentException("16-bit weights and more than " + SPLIT_MAX_ROWS + " rows");
        try (CudaTensor converted = inFormat(xt, wt.dtype())) {
            gemm.runCandidate(stream, index, wt.dtype(), wt.address(), converted.address(), ot.address(), n, wt.cols(), wt.rows());
        }
    }

    /**
     * {@code out = x w^T} with x already in w's 16-bit format and out in F32 or that format, through the heuristic's
     * GEMM and nothing else (no conversion, no bias); for timings of the GEMM's output type.
     */
    void gemmOnly(Tensor x, Weight w, Tensor out) {
        CudaTensor xt = cuda(x, "gemmOnly", "x"), ot = cuda(out, "gemmOnly", "out");
        CudaWeight wt = cuda(w);
        if (xt.dtype() != wt.dtype() || xt.cols() != wt.cols() || ot.rows() != xt.rows() || ot.cols() != wt.rows()) {
            throw shapes("gemmOnly", "x " + xt.dtype() + " " + xt.shape() + ", w '" + wt.name() + "' " + wt.dtype() + " "
                    + wt.shape() + ", out " + ot.shape(), "need x [n, in] in w's format, w [out, in], out [n, out]");
        }
        gemm.run(stream, wt.dtype(), ot.dtype(), wt.address(), xt.address(), ot.address(), xt.rows(), wt.cols(), wt.rows(), false);
    }

    /**
     * silu_mul as the fused MLP runs it with a 16-bit gate/up product: x [n, 2I] (float32, rounded to out's format
     * first, or in that format already) into out [n, I] in a 16-bit format; for tests and timings.
     */
    void siluMul16(Tensor x, Tensor out) {
        CudaTensor xt = activations(x, "siluMul16", "x"), ot = cuda(out, "siluMul16", "out");
        if (ot.dtype() != DType.BF16 && ot.dtype() != DType.F16) throw new IllegalArgumentException("siluMul16: out is " + ot.dtype());
        int n = xt.rows(), inner = ot.cols();
        if (xt.cols() != 2 * inner || ot.rows() != n) {
            throw shapes("siluMul16", "x " + xt.shape() + ", out " + ot.shape(), "need x [n, 2I] and out [n, I]");
        }
        try (CudaTensor x16 = inFormat(xt, ot.dtype())) {
            siluMul(x16 != null ? x16.address() : xt.address(), ot.dtype(), ot.address(), ot.dtype(), n, inner);
        }
    }

    /** The GEMM shapes tuned so far and the heuristic rank of the algorithm kept for each (for tests and timings). */
    java.util.Map<String, Integer> gemmChoices() { return gemm.tunedChoices(); }

    /** The cuBLASLt workspace bytes the GEMM plan of a weight over n rows (F32 output) was made for, -1 if none yet; for tests. */
    long gemmWorkspace(Weight w, int n) {
        CudaWeight wt = cuda(w);
        return gemm.plannedWorkspace(wt.dtype(), n, wt.cols(), wt.rows());
    }

    /** Turns the fused long-step MLP (see {@link #FUSED_MLP_PROPERTY}) on or off; returns the old setting. */
    boolean fusedMlp(boolean on) {
        boolean old = fusedMlp;
        fusedMlp = on;
        return old;
    }

    /**
     * With {@link #FUSED_MLP_PROPERTY} on, a step of more than {@link #SPLIT_MAX_ROWS} rows with 16-bit weights:
     * the gate/up GEMM as {@link #linear} runs it, then silu_mul writes the activation straight in the
     * weight format, which the down GEMM takes as it is. The same numbers as the two ops (linear rounds a long
     * step's activation to the weight format anyway), without the float32 activation and its conversion.
     */
    @Override
    public void mlp(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor out) {
        mlp(h, gateUp, gateUpBias, down, downBias, out, false);
    }

    /**
     * Where the GEMMs take x in the weight's 16-bit format ({@link #activationFormat}) and the MLP runs fused:
     * {@link #linearAdd} and {@link #mlpAdd} add their product into the residual inside cuBLASLt's GEMM (beta 1),
     * so the residual add needs no product written and read back (with a bias it still does; see gemmLinear). Used by
     * the model under {@link dev.lathe.core.model.LlamaModel#RESIDUAL_ADD_PROPERTY}.
     */
    @Override
    public boolean addsIntoResidual(Weight w, int rows) {
        return fusedMlp && activationFormat(w, rows) != DType.F32;
    }

    @Override
    public void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) {
        CudaTensor xt = activations(x, "linearAdd", "x"), at = activations(acc, "linearAdd", "acc");
        CudaWeight wt = cuda(w), bt = bias(bias, wt, "linearAdd");
        int n = xt.rows();
        checkResidual("linearAdd", at, wt, bt, n);
        if (!addsIntoResidual(w, n) || (xt.dtype() != DType.F32 && xt.dtype() != wt.dtype())) {
            throw new IllegalArgumentException("linearAdd: x " + xt.dtype() + " with " + n + " rows for w '" + wt.name() + "' of "
                    + wt.dtype() + "; it takes x in F32 or w's 16-bit format where addsIntoResidual says so");
        }
        if (xt.cols() != wt.cols() || at.rows() != n || at.cols() != wt.rows()) {
            throw shapes("linearAdd", "x " + xt.shape() + ", w '" + wt.name() + "' " + wt.shape() + ", acc " + at.shape(),
                    "need x [n, in], w [out, in], acc [n, out]");
        }
        gemmLinear(xt, wt, bt, at, true);
    }

    /** A residual acc is F32, or (no bias) the 16-bit {@link #residualFormat} of the weight at these rows. */
    private void checkResidual(String op, CudaTensor acc, CudaWeight w, Weight bias, int rows) {
        if (acc.dtype() == DType.F32) return;
        if (bias != null || acc.dtype() != residualFormat(w, rows)) {
            throw new IllegalArgumentException(op + ": acc is " + acc.dtype() + " for '" + w.name() + "' (" + w.dtype() + ") at " + rows
                    + " rows" + (bias != null ? " with a bias" : "") + "; a 16-bit acc needs the format residualFormat gives (now "
                    + residualFormat(w, rows) + ", see " + RESIDUAL16_PROPERTY + ") and no bias; else pass F32");
        }
    }

    /**
     * With {@link #RESIDUAL16_PROPERTY} on: the weight's 16-bit format where {@link #addsIntoResidual} holds for it (long
     * steps, 16-bit weights); F32 otherwise.
     */
    @Override
    public DType residualFormat(Weight w, int rows) {
        return residual16 && addsIntoResidual(w, rows) ? activationFormat(w, rows) : DType.F32;
    }

    /** Turns the 16-bit residual stream (see {@link #RESIDUAL16_PROPERTY}) on or off; returns the old setting. */
    boolean residual16(boolean on) {
        boolean old = residual16;
        residual16 = on;
        return old;
    }

    @Override
    public void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
        mlp(h, gateUp, gateUpBias, down, downBias, acc, true);
    }

    private void mlp(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor out, boolean accumulate) {
        String op = accumulate ? "mlpAdd" : "mlp";
        CudaTensor ht = activations(h, op, "h"), ot = accumulate ? activations(out, op, "acc") : floats(out, op, "out");
        CudaWeight gu = cuda(gateUp), dn = cuda(down);
        int n = ht.rows(), inner = gu.rows() / 2;
        if (accumulate) checkResidual(op, ot, dn, downBias, n);
        if (!fusedMlp || n <= SPLIT_MAX_ROWS || gu.dtype() == DType.F32 || dn.dtype() != gu.dtype()
                || gu.rows() % 2 != 0 || dn.cols() != inner || ot.rows() != n || ot.cols() != dn.rows()) {
            if (accumulate) {
                throw new IllegalArgumentException("mlpAdd: h " + ht.shape() + " " + ht.dtype() + ", gate/up '" + gu.name() + "' "
                        + gu.shape() + " " + gu.dtype() + ", down '" + dn.name() + "' " + dn.shape() + " " + dn.dtype() + ", acc "
                        + ot.shape() + ": it needs the fused MLP (16-bit weights of one format, more than " + SPLIT_MAX_ROWS
                        + " rows) where addsIntoResidual says so");
            }
            Backend.super.mlp(h, gateUp, gateUpBias, down, downBias, out);
            return;
        }
        CudaWeight db = downBias == null ? null : cuda(downBias);
        if (db != null && (db.rows() != 1 || db.cols() != dn.rows())) {
            throw shapes("mlp", "down '" + dn.name() + "' " + dn.shape() + ", bias " + db.shape(), "bias must be [1, down.rows]");
        }
        // the gate/up product in the weight format (lathe.mlp.gate16, no bias): one GEMM writing half the bytes
        boolean gate16 = mlpGate16 && gateUpBias == null;
        try (CudaTensor gateUpOut = (CudaTensor) allocate(gate16 ? gu.dtype() : DType.F32, n, gu.rows());
             CudaTensor act = (CudaTensor) allocate(dn.dtype(), n, inner)) {
            if (gate16) {
                try (CudaTensor x16 = inFormat(ht, gu.dtype())) {
                    gemm.run(stream, gu.dtype(), gu.dtype(), gu.address(), x16 != null ? x16.address() : ht.address(),
                            gateUpOut.address(), n, gu.cols(), gu.rows(), !capturing());
                }
            } else {
                linear(h, gateUp, gateUpBias, gateUpOut);
            }
            siluMul(gateUpOut.address(), gateUpOut.dtype(), act.address(), dn.dtype(), n, inner);
            gemmLinear(act, dn, db, ot, accumulate);  // act is in the down weights' format already
        }
    }

    /** {@code out += x}, element by element, for two float32 tensors of one shape (bias_add over a single row). */
    private void addInto(CudaTensor out, CudaTensor x) {
        if (out.size() != x.size() || out.size() > Integer.MAX_VALUE) {
            throw new IllegalStateException("addInto: " + out.shape() + " and " + x.shape());
        }
        kernels.biasAdd.launch(stream, Kernels.elementBlocks(out.size()), 1, 256,
                out.address(), x.address(), 1L, (int) out.size(), dtypeCode(DType.F32));
    }

    /**
     * With {@link #FUSED_NORM_PROPERTY} on: the weight's 16-bit format for more than {@link #SPLIT_MAX_ROWS} rows
     * (and more than the GEMV rows), where {@link #linear} would round float32 activations to that format
     * anyway; so a norm can write its output there and the GEMM takes it as it is. F32 otherwise.
     */
    @Override
    public DType activationFormat(Weight w, int rows) {
        CudaWeight wt = cuda(w);
        boolean sixteen = wt.dtype() == DType.BF16 || wt.dtype() == DType.F16;
        return fusedNorm && sixteen && rows > SPLIT_MAX_ROWS && rows > gemvMaxRows ? wt.dtype() : DType.F32;
    }

    /**
     * With {@link #QKV16_PROPERTY} on: the weight's 16-bit format where {@link #activationFormat} is that format too
     * (more than {@link #SPLIT_MAX_ROWS} rows, cuBLASLt's path); F32 otherwise.
     */
    @Override
    public DType projectionFormat(Weight w, int rows) {
        return qkv16 ? activationFormat(w, rows) : DType.F32;
    }

    /** Turns the 16-bit qkv product (see {@link #QKV16_PROPERTY}) on or off; returns the old setting. */
    boolean qkv16(boolean on) {
        boolean old = qkv16;
        qkv16 = on;
        return old;
    }

    /** Turns the 16-bit gate/up product (see {@link #MLP_GATE16_PROPERTY}) on or off; returns the old setting. */
    boolean mlpGate16(boolean on) {
        boolean old = mlpGate16;
        mlpGate16 = on;
        return old;
    }

    /** Turns norm outputs in the GEMM input format (see {@link #FUSED_NORM_PROPERTY}) on or off; returns the old setting. */
    boolean fusedNorm(boolean on) {
        boolean old = fusedNorm;
        fusedNorm = on;
        return old;
    }

    /** Rows up to which {@link #linear} and {@link #linearSiluMul} run the gemv kernels (see {@link #GEMV_ROWS_PROPERTY}). */
    int gemvMaxRows() { return gemvMaxRows; }

    /** Sets {@link #gemvMaxRows()} (0 to {@link #GEMV_MAX_ROWS}); returns the old value. */
    int gemvMaxRows(int n) {
        int old = gemvMaxRows;
        gemvMaxRows = Math.clamp(n, 0, GEMV_MAX_ROWS);
        return old;
    }

    /** An I32 tensor's values (for tests). */
    int[] downloadInts(Tensor t) {
        CudaTensor c = ints(t, "downloadInts", "t");
        int[] out = new int[Math.toIntExact(c.size())];
        copyOut(c, MemorySegment.ofArray(out));
        return out;
    }

    /** A BF16 or F16 tensor's values, widened to float (for tests). */
    float[] download16(Tensor t) {
        CudaTensor c = cuda(t, "download16", "t");
        if (c.dtype() != DType.BF16 && c.dtype() != DType.F16) throw new IllegalArgumentException("download16: tensor is " + c.dtype());
        short[] raw = new short[Math.toIntExact(c.size())];
        copyOut(c, MemorySegment.ofArray(raw));
        float[] out = new float[raw.length];
        for (int i = 0; i < raw.length; i++) {
            out[i] = c.dtype() == DType.BF16 ? Float.intBitsToFloat((raw[i] & 0xffff) << 16) : Float.float16ToFloat(raw[i]);
        }
        return out;
    }

    /** Every byte of a KV cache, all layers, in its storage layout (for tests). */
    byte[] cacheBytes(KvCache cache) {
        CudaKvCache c = cuda(cache);
        byte[] out = new byte[Math.toIntExact(c.buffer().bytes())];
        copyOut(c.buffer(), out.length, MemorySegment.ofArray(out));
        return out;
    }

    /** Sets the most pieces split attention may cut a context into (see {@link #MAX_SPLITS_PROPERTY}); returns the old value. */
    int maxAttentionSplits(int n) {
        int old = maxSplits;
        maxSplits = Math.clamp(n, 1, MAX_SPLITS);
        return old;
    }

    /** Launches a gemv kernel: a warp per weight row. */
    private void gemv(Kernel k, CudaTensor x, CudaWeight w, CudaWeight bias, CudaTensor out) {
        int blocks = (w.rows() + GEMV_WARPS - 1) / GEMV_WARPS;
        k.launch(stream, blocks, 1, GEMV_WARPS * 32, x.address(), w.address(), bias == null ? 0L : bias.address(),
                out.address(), x.rows(), w.cols(), w.rows(), dtypeCode(w.dtype()), bias == null ? 0 : dtypeCode(bias.dtype()), 0);
    }

    /**
     * Up to {@link #gemvMaxRows()} rows: one GEMV kernel with the SiLU-and-multiply in its epilogue (gemv.cu's
     * *_glu kernels), the same arithmetic as {@link #linear} then {@link #siluMul}. More rows run those two.
     */
    @Override
    public void linearSiluMul(Tensor x, Weight w, Weight bias, Tensor out) {
        CudaTensor xt = activations(x, "linearSiluMul", "x"), ot = floats(out, "linearSiluMul", "out");
        CudaWeight wt = cuda(w);
        int n = xt.rows();
        if (n == 0 || n > gemvMaxRows || !fusedGlu || xt.dtype() != DType.F32) {
            Backend.super.linearSiluMul(x, w, bias, out);
            return;
        }
        CudaWeight bt = bias == null ? null : cuda(bias);
        if (xt.cols() != wt.cols() || wt.rows() != 2 * ot.cols() || ot.rows() != n
                || (bt != null && (bt.rows() != 1 || bt.cols() != wt.rows()))) {
            throw shapes("linearSiluMul", "x " + xt.shape() + ", w '" + wt.name() + "' " + wt.shape() + ", out " + ot.shape()
                    + (bt == null ? "" : ", bias " + bt.shape()), "need x [n, in], w [2I, in], out [n, I] and bias [1, 2I] or none");
        }
        Kernel k = n == 1 ? kernels.gemv1Glu : n == 2 ? kernels.gemv2Glu : n <= 4 ? kernels.gemv4Glu : kernels.gemv8Glu;
        int inner = ot.cols();
        k.launch(stream, (inner + GEMV_WARPS - 1) / GEMV_WARPS, 1, GEMV_WARPS * 32, xt.address(), wt.address(),
                bt == null ? 0L : bt.address(), ot.address(), n, wt.cols(), wt.rows(), dtypeCode(wt.dtype()),
                bt == null ? 0 : dtypeCode(bt.dtype()), inner);
    }

    @Override
    public void splitColumns(Tensor src, Tensor... outs) {
        CudaTensor st = floats(src, "splitColumns", "src");
        long width = 0;
        boolean rowsMatch = true;
        StringBuilder shapes = new StringBuilder();
        for (int k = 0; k < outs.length; k++) {
            CudaTensor o = floats(outs[k], "splitColumns", "outs[" + k + "]");
            width += o.cols();
            shapes.append(' ').append(o.shape());
            rowsMatch &= o.rows() == st.rows();
        }
        if (!rowsMatch || width != st.cols()) {
            throw shapes("splitColumns", "src " + st.shape() + ", outs" + shapes, "outs need src's rows and widths summing to src.cols");
        }
        int col = 0;
        for (Tensor t : outs) {
            CudaTensor o = (CudaTensor) t;
            if (o.size() > 0) {
                kernels.splitColumns.launch(stream, Kernels.elementBlocks(o.size()), 1, 256,
                        st.address(), o.address(), (long) st.rows(), st.cols(), col, o.cols());
            }
            col += o.cols();
        }
    }

    @Override
    public void rope(Tensor x, Tensor cos, Tensor sin) {
        CudaTensor xt = floats(x, "rope", "x"), ct = floats(cos, "rope", "cos"), st = floats(sin, "rope", "sin");
        int half = ct.cols();
        if (!sameShape(ct, st) || ct.rows() != xt.rows() || half == 0 || xt.cols() % (2 * half) != 0) {
            throw shapes("rope", "x " + xt.shape() + ", cos " + ct.shape() + ", sin " + st.shape(),
                    "cos and sin must be [n, half] and x [n, heads * 2 * half]");
        }
        int heads = xt.cols() / (2 * half);
        long total = (long) xt.rows() * heads * half;
        if (total == 0) return;
        kernels.rope.launch(stream, Kernels.elementBlocks(total), 1, 256,
                xt.address(), ct.address(), st.address(), (long) xt.rows(), heads, half);
    }

    /** Slots outside the cache (e.g. -1 padding) are skipped. */
    @Override
    public void writeKv(KvCache cache, int layer, Tensor k, Tensor v, Tensor slotMapping) {
        CudaKvCache c = cuda(cache);
        CudaTensor kt = floats(k, "writeKv", "k"), vt = floats(v, "writeKv", "v"), mt = ints(slotMapping, "writeKv", "slotMapping");
        int width = c.numKvHeads() * c.headDim();
        if (!sameShape(kt, vt) || kt.cols() != width || mt.rows() != 1 || mt.cols() != kt.rows()) {
            throw shapes("writeKv", "k " + kt.shape() + ", v " + vt.shape() + ", slotMapping " + mt.shape()
                    + ", cache kvHeads*headDim=" + width, "need k and v [n, kvHeads * headDim] and slotMapping [1, n]");
        }
        long total = kt.size();
        if (total == 0) return;
        kernels.writeKv.launch(stream, Kernels.elementBlocks(total), 1, 256,
                kt.address(), vt.address(), c.keys(layer), c.values(layer), mt.address(), c.slots(),
                kt.rows(), width, dtypeCode(c.dtype()));
    }

    /** One kernel (rope_write_kv in kv_cache.cu), the same arithmetic as the four ops it replaces. */
    @Override
    public void ropeWriteKv(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, Tensor slotMapping) {
        ropeWriteKv(qkv, q, cos, sin, cache, layer, slotMapping, true);
    }

    /** ropeWriteKv; {@code writeQ} false writes the keys and values only (the grid then covers the K/V heads alone). */
    private void ropeWriteKv(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, Tensor slotMapping,
                             boolean writeQ) {
        CudaKvCache c = cuda(cache);
        CudaTensor xt = activations(qkv, "ropeWriteKv", "qkv"), qt = floats(q, "ropeWriteKv", "q");
        CudaTensor ct = floats(cos, "ropeWriteKv", "cos"), st = floats(sin, "ropeWriteKv", "sin");
        CudaTensor mt = ints(slotMapping, "ropeWriteKv", "slotMapping");
        int headDim = c.headDim(), half = ct.cols(), kvWidth = c.numKvHeads() * headDim;
        int n = xt.rows();
        if (!sameShape(ct, st) || ct.rows() != n || 2 * half != headDim || qt.rows() != n || qt.cols() % headDim != 0
                || xt.cols() != qt.cols() + 2 * kvWidth || mt.rows() != 1 || mt.cols() != n) {
            throw shapes("ropeWriteKv", "qkv " + xt.shape() + ", q " + qt.shape() + ", cos " + ct.shape() + ", sin "
                    + st.shape() + ", slotMapping " + mt.shape() + ", cache kvHeads=" + c.numKvHeads() + " headDim=" + headDim,
                    "need q [n, heads * headDim], qkv [n, q width + 2 * kvHeads * headDim], cos and sin [n, headDim / 2]"
                            + " and slotMapping [1, n]");
        }
        int heads = qt.cols() / headDim;
        if (n == 0) return;
        // grid (token, 256 threads of vec element pairs each over its heads); see rope_write_kv
        long qAddress = writeQ ? qt.address() : 0L;
        long pointers = xt.address() | qAddress | c.keys(layer) | c.values(layer) | ct.address() | st.address();
        int vec = half % 4 == 0 && pointers % 16 == 0 ? 4 : 1;
        long groups = ((writeQ ? heads : 0) + 2L * c.numKvHeads()) * half / vec;
        kernels.ropeWriteKv.launch(stream, n, Math.toIntExact((groups + 255) / 256), 256,
                xt.address(), qAddress, c.keys(layer), c.values(layer), ct.address(), st.address(), mt.address(),
                c.slots(), (long) n, heads, c.numKvHeads(), half, dtypeCode(c.dtype()), dtypeCode(xt.dtype()), vec);
    }

    /**
     * Three kernels: the flash kernel (flash_attention.cu: tensor cores, 64 query rows of one sequence per
     * block, or 16 rows of four heads in its grouped-query variant) when the cache is BF16 or F16, headDim is 64 or 128 and the step's longest query run is at
     * least {@link #FLASH_MIN_QUERY_ROWS} rows; otherwise the split-context kernel (split_attention.cu) for
     * head sizes that are multiples of 32 (its tensor-core variant under {@link #MMA_DECODE_PROPERTY}), and the
     * row-per-block kernel (attention.cu) for the rest. The
     * flash kernel rounds q and the softmax weights to the cache type; the others compute in F32 throughout.
     * With {@link #FLASH_GQA_PROPERTY} on and a multiple of 4 query heads per KV head, the flash kernel's
     * grouped-query variant takes its place (32-row work items, or 16-row under {@link #FLASH_GQA_WARP_ROWS_PROPERTY} 16).
     */
    @Override
    public void attention(Tensor q, KvCache cache, int layer, AttentionMetadata meta, float scale, Tensor out) {
        CudaKvCache c = cuda(cache);
        CudaTensor qt = floats(q, "attention", "q"), ot = activations(out, "attention", "out");
        attend(qt, ot, c, layer, meta, scale, attentionInputs("attention", qt, ot, c, meta));
    }

    /** {@link #attention} of inputs {@link #attentionInputs} has checked ({@code m}: its queryStarts, contextLens, blockTables). */
    private void attend(CudaTensor qt, CudaTensor ot, CudaKvCache c, int layer, AttentionMetadata meta, float scale, CudaTensor[] m) {
        int headDim = c.headDim();
        lastDecodePieces = 0;
        CudaTensor starts = m[0], lens = m[1], tables = m[2];
        if (qt.rows() == 0) return;
        int heads = qt.cols() / headDim;
        FlashChoice flash = flashChoice(c, meta, heads);
        if (flash != null) {
            // the flash kernels write float32 or the cache's own 16-bit format; another 16-bit output (an F16
            // model over a BF16 cache) takes float32 from them and is rounded after (the other kernels write any).
            // A third output format inside the kernels cost the default grouped-query kernel 8-20 bytes of spill.
            if (ot.dtype() != DType.F32 && ot.dtype() != c.dtype()) {
                try (CudaTensor f32 = (CudaTensor) allocate(DType.F32, ot.rows(), ot.cols())) {
                    attend(qt, f32, c, layer, meta, scale, m);
                    kernels.convertFromF32.launch(stream, Kernels.elementBlocks(f32.size()), 1, 256,
                            f32.address(), ot.address(), f32.size(), dtypeCode(ot.dtype()));
                }
                return;
            }
            long work = launchFlash(flash, qt.address(), 0L, 0L, 0, c, layer, meta, scale, ot, starts, lens, tables, heads);
            if (planShortRows > 0) {
                if (headDim % 32 != 0) throw new IllegalStateException("flash head sizes are multiples of 32");
                splitAttention(qt, c, layer, meta, scale, ot, starts, lens, tables, heads, work + 8L * planItems);
            }
            return;
        }
        if (headDim % 32 == 0) {
            splitAttention(qt, c, layer, meta, scale, ot, starts, lens, tables, heads, 0L);
            return;
        }
        kernels.attention.launch(stream, qt.rows(), heads, 128,
                qt.address(), c.keys(layer), c.values(layer), ot.address(), starts.address(), lens.address(),
                tables.address(), meta.numSeqs(), heads, c.numKvHeads(), headDim, c.blockSize(), tables.cols(),
                meta.slidingWindow(), dtypeCode(c.dtype()), dtypeCode(ot.dtype()), scale);
    }

    /**
     * Checks attention's shapes (q and out [numTokens, heads * headDim], heads a multiple of the cache's KV heads) and
     * the metadata; returns its queryStarts, contextLens and blockTables tensors.
     */
    private CudaTensor[] attentionInputs(String op, CudaTensor qt, CudaTensor ot, CudaKvCache c, AttentionMetadata meta) {
        int headDim = c.headDim();
        if (!sameShape(qt, ot) || qt.cols() % headDim != 0 || (qt.cols() / headDim) % c.numKvHeads() != 0
                || qt.rows() != meta.numTokens()) {
            throw shapes(op, "q " + qt.shape() + ", out " + ot.shape() + ", cache kvHeads=" + c.numKvHeads()
                    + " headDim=" + headDim + ", meta numTokens=" + meta.numTokens(),
                    "need q = out = [numTokens, heads * headDim] with heads a multiple of kvHeads");
        }
        if (headDim > MAX_HEAD_DIM) {
            throw new IllegalArgumentException(op + ": headDim " + headDim + " is above the kernel's limit of " + MAX_HEAD_DIM);
        }
        CudaTensor starts = ints(meta.queryStarts(), op, "queryStarts");
        CudaTensor lens = ints(meta.contextLens(), op, "contextLens");
        CudaTensor tables = ints(meta.blockTables(), op, "blockTables");
        int numSeqs = meta.numSeqs();
        if (starts.size() != numSeqs + 1L || lens.size() != numSeqs || tables.rows() != numSeqs) {
            throw shapes(op, "queryStarts " + starts.shape() + ", contextLens " + lens.shape() + ", blockTables "
                    + tables.shape() + " for numSeqs=" + numSeqs, "need [1, numSeqs + 1], [1, numSeqs], [numSeqs, maxBlocks]");
        }
        checkPlan(meta, c, tables.cols());
        return new CudaTensor[]{starts, lens, tables};
    }

    /** The flash kernel a step's attention takes: the grouped-query variant's or the plain one; its grid's x extent and block size. */
    private record FlashChoice(GqaVariant variant, int gridX, int threads) {}

    /**
     * The flash kernel for this step (see {@link #attention}), with the plan made for its tile rows; null where the
     * step takes the split or row-per-block kernel only.
     */
    private FlashChoice flashChoice(CudaKvCache c, AttentionMetadata meta, int heads) {
        int group = heads / c.numKvHeads();
        GqaVariant variant = gqaVariant();
        Kernel gqaKernel = flashGqa && group % 4 == 0 ? variant.kernel(c.dtype(), c.headDim()) : null;
        boolean gqa = gqaKernel != null;
        if (gqa) {
            plan(meta, variant.tileRows());
            gqa = planItems <= MAX_GRID_Y;  // else the plain kernel's 64-row items may still fit the grid
        }
        Kernel flash = gqa ? gqaKernel : flashKernel(c.dtype(), c.headDim());
        if (flash == null) return null;
        plan(meta, gqa ? variant.tileRows() : FLASH_TILE_ROWS);
        if (planLongestRun < FLASH_MIN_QUERY_ROWS || planItems > MAX_GRID_Y) return null;
        return new FlashChoice(gqa ? variant : null, gqa ? c.numKvHeads() * (group / 4) : heads, gqa ? variant.threads() : FLASH_THREADS);
    }

    /**
     * Queues the flash kernel over the plan's work items; returns the work list's device address. {@code ropeCos} 0:
     * q is the rotated F32 queries; else q is the unrotated 16-bit qkv product with rows of {@code qStride} values, and
     * the kernel rotates by the rows of these tables (device addresses of [numTokens, headDim / 2] F32).
     */
    private long launchFlash(FlashChoice f, long q, long ropeCos, long ropeSin, int qStride, CudaKvCache c, int layer,
                             AttentionMetadata meta, float scale, CudaTensor ot, CudaTensor starts, CudaTensor lens,
                             CudaTensor tables, int heads) {
        long work = uploadPlan(meta);
        Kernel flash = f.variant() != null ? f.variant().kernel(c.dtype(), c.headDim()) : flashKernel(c.dtype(), c.headDim());
        lastFlashKernel = flash.function();
        flash.launch(stream, f.gridX(), planItems, f.threads(),
                q, c.keys(layer), c.values(layer), ot.address(), work, starts.address(),
                lens.address(), tables.address(), heads, c.numKvHeads(), c.blockSize(), tables.cols(),
                meta.slidingWindow(), dtypeCode(ot.dtype()), scale, ropeCos, ropeSin, qStride);
        return work;
    }

    /**
     * With {@link #ROPE_IN_ATTENTION_PROPERTY} on, where a flash kernel takes every row of the step, qkv is in the
     * cache's 16-bit format and out is F32 or that format: rope_write_kv writes the keys and values, and the flash kernel
     * rotates the queries as it reads them from qkv ({@code q} is left unwritten). Otherwise the two ops.
     */
    @Override
    public void ropeAttention(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, AttentionMetadata meta,
                              float scale, Tensor out) {
        CudaKvCache c = cuda(cache);
        // the kernels read a query pair as 4 bytes of qkv and a rotary pair as 8 bytes of cos and sin
        boolean eligible = ropeInAttention && qkv.dtype() == c.dtype() && q.rows() > 0
                && (out.dtype() == DType.F32 || out.dtype() == c.dtype())
                && ((cuda(qkv, "ropeAttention", "qkv").address() & 3) | ((cuda(cos, "ropeAttention", "cos").address()
                    | cuda(sin, "ropeAttention", "sin").address()) & 7)) == 0;
        if (!eligible) {
            ropeWriteKv(qkv, q, cos, sin, cache, layer, meta.slotMapping());
            attention(q, cache, layer, meta, scale, out);
            return;
        }
        CudaTensor qt = floats(q, "ropeAttention", "q"), ot = activations(out, "ropeAttention", "out");
        CudaTensor[] m = attentionInputs("ropeAttention", qt, ot, c, meta);
        FlashChoice flash = flashChoice(c, meta, qt.cols() / c.headDim());
        boolean inKernel = flash != null && planShortRows == 0;  // the split kernel's rows read the rotated F32 q
        // ropeWriteKv checks qkv, q, cos, sin and the slots against each other before it queues the keys and values
        ropeWriteKv(qkv, q, cos, sin, cache, layer, meta.slotMapping(), !inKernel);
        if (!inKernel) {
            attend(qt, ot, c, layer, meta, scale, m);
            return;
        }
        lastDecodePieces = 0;
        launchFlash(flash, ((CudaTensor) qkv).address(), ((CudaTensor) cos).address(), ((CudaTensor) sin).address(), qkv.cols(),
                c, layer, meta, scale, ot, m[0], m[1], m[2], qt.cols() / c.headDim());
    }

    /**
     * split_attention.cu: a lane per key, blocks over (row, KV head, context piece). Few rows (a decode step
     * of a few sequences) leave most of the GPU idle with one block per (row, KV head), so the context is cut
     * into pieces of a multiple of 32 keys until there are about {@link #SPLIT_BLOCKS_PER_SM} blocks per SM,
     * and attention_combine merges the pieces' partial softmax states. With a {@code rowList} (device address,
     * not 0), only the {@link #planShortRows} rows it lists are computed, in one piece each: the rows of short
     * query runs in a step whose other rows the flash kernel writes.
     */
    private void splitAttention(CudaTensor qt, CudaKvCache c, int layer, AttentionMetadata meta, float scale, CudaTensor ot,
                                CudaTensor starts, CudaTensor lens, CudaTensor tables, int heads, long rowList) {
        int headDim = c.headDim(), rows = rowList != 0 ? planShortRows : qt.rows(), window = meta.slidingWindow();
        int span = 1;  // the most keys any row attends to
        for (int ctx : meta.hostContextLens()) span = Math.max(span, window > 0 ? Math.min(window, ctx) : ctx);
        Kernel mma = mmaDecode && heads / c.numKvHeads() <= MMA_DECODE_MAX_GROUP ? splitMmaKernel(c.dtype(), headDim) : null;
        long target = (long) (mma != null ? mmaDecodeBlocksPerSm : SPLIT_BLOCKS_PER_SM) * multiprocessors;
        // with a row list, one piece: attention_combine would write every row
        int chunk = splitChunk((long) rows * c.numKvHeads(), target, span, rowList != 0 ? 1 : maxSplits);
        int splits = (span + chunk - 1) / chunk;
        Kernel k = mma != null ? mma : kernels.splitAttention[headDim / 32 - 1];
        int threads = mma != null ? 32 : SPLIT_THREADS;
        boolean kvFirst = headsFastest && rows <= MAX_GRID_Y;
        int gx = kvFirst ? c.numKvHeads() : rows, gy = kvFirst ? rows : c.numKvHeads();
        lastDecodePieces = splits;
        lastDecodeMma = mma != null;
        lastDecodeKvFirst = kvFirst;
        if (splits == 1) {
            k.launch3(stream, gx, gy, 1, threads,
                    qt.address(), c.keys(layer), c.values(layer), ot.address(), 0L, 0L, starts.address(), lens.address(),
                    tables.address(), rowList, meta.numSeqs(), heads, c.numKvHeads(), headDim, c.blockSize(), tables.cols(),
                    window, dtypeCode(c.dtype()), 1, chunk, dtypeCode(ot.dtype()), scale, kvFirst ? 1 : 0);
            return;
        }
        int parts = Math.toIntExact((long) rows * heads * splits);
        try (CudaTensor acc = (CudaTensor) allocate(DType.F32, parts, headDim);
             CudaTensor ml = (CudaTensor) allocate(DType.F32, parts, 2)) {
            k.launch3(stream, gx, gy, splits, threads,
                    qt.address(), c.keys(layer), c.values(layer), ot.address(), acc.address(), ml.address(),
                    starts.address(), lens.address(), tables.address(), 0L, meta.numSeqs(), heads, c.numKvHeads(), headDim,
                    c.blockSize(), tables.cols(), window, dtypeCode(c.dtype()), splits, chunk, dtypeCode(ot.dtype()), scale,
                    kvFirst ? 1 : 0);
            kernels.attentionCombine.launch(stream, rows, heads, Math.min(headDim, 128),
                    acc.address(), ml.address(), ot.address(), heads, headDim, splits, dtypeCode(ot.dtype()));
        }
    }

    /**
     * The keys per piece (a multiple of 32) of a split-context launch of {@code blocks} = rows x KV heads blocks over
     * contexts of up to {@code span} keys: one piece where the blocks reach {@code target}, else as many as take them
     * there, at most {@code maxSplits} and at most one a {@link #SPLIT_MIN_CHUNK} keys of the span.
     */
    static int splitChunk(long blocks, long target, int span, int maxSplits) {
        int splits = blocks >= target ? 1 : (int) Math.min(maxSplits, (target + blocks - 1) / blocks);
        splits = Math.max(1, Math.min(splits, (span + SPLIT_MIN_CHUNK - 1) / SPLIT_MIN_CHUNK));
        return ((span + splits - 1) / splits + 31) / 32 * 32;
    }

    /** The flash kernel for a cache type and head size, or null where it has none. */
    private Kernel flashKernel(DType dtype, int headDim) {
        return byCacheType(dtype, headDim, kernels.flashBf16D64, kernels.flashBf16D128, kernels.flashF16D64, kernels.flashF16D128);
    }

    /** One of a tensor-core kernel family's four entries (BF16/F16 cache x head size 64/128), or null for other caches. */
    private static Kernel byCacheType(DType dtype, int headDim, Kernel bf16d64, Kernel bf16d128, Kernel f16d64, Kernel f16d128) {
        return switch (dtype) {
            case BF16 -> headDim == 64 ? bf16d64 : headDim == 128 ? bf16d128 : null;
            case F16 -> headDim == 64 ? f16d64 : headDim == 128 ? f16d128 : null;
            default -> null;
        };
    }

    /** The tensor-core decode kernel for a cache type and head size, or null where it has none. */
    private Kernel splitMmaKernel(DType dtype, int headDim) {
        return byCacheType(dtype, headDim, kernels.splitMmaBf16D64, kernels.splitMmaBf16D128, kernels.splitMmaF16D64,
                kernels.splitMmaF16D128);
    }

    /** Sets the grouped-query flash kernel's tile keys (see {@link #FLASH_GQA_KEYS_PROPERTY}); returns the old setting. */
    int flashGqaKeys(int keys) {
        int old = flashGqaKeys;
        flashGqaKeys = gqaKeys(keys);
        return old;
    }

    /** Turns query rotation inside the flash kernels (see {@link #ROPE_IN_ATTENTION_PROPERTY}) on or off; returns the old setting. */
    boolean ropeInAttention(boolean on) {
        boolean old = ropeInAttention;
        ropeInAttention = on;
        return old;
    }

    /** Turns the warp-specialised kernel (see {@link #FLASH_GQA_WARP_SPECIALIZED_PROPERTY}) on or off; returns the old setting. */
    boolean flashGqaWarpSpecialized(boolean on) {
        boolean old = flashGqaWarpSpecialized;
        flashGqaWarpSpecialized = on;
        return old;
    }

    /** Turns the overlapped wgmma kernel (see {@link #FLASH_GQA_OVERLAP_PROPERTY}) on or off; returns the old setting. */
    boolean flashGqaOverlap(boolean on) {
        boolean old = flashGqaOverlap;
        flashGqaOverlap = on;
        return old;
    }

    private static int gqaKeys(int keys) {
        return oneOf(FLASH_GQA_KEYS_PROPERTY, keys, "the grouped-query flash kernel takes tiles of 32 or 64 keys", 32, 64);
    }

    /** {@code value} of {@code property} where it is one of {@code allowed}; else an error saying {@code what} is allowed. */
    private static int oneOf(String property, int value, String what, int... allowed) {
        for (int a : allowed) if (a == value) return value;
        throw new IllegalArgumentException(property + " is " + value + ": " + what);
    }

    /** Turns the KV-head-first grid of the split-context kernels (see {@link #HEADS_FASTEST_PROPERTY}) on or off; returns the old setting. */
    boolean headsFastest(boolean on) {
        boolean old = headsFastest;
        headsFastest = on;
        return old;
    }

    /** Turns the tensor-core decode kernel (see {@link #MMA_DECODE_PROPERTY}) on or off; returns the old setting. */
    boolean mmaDecode(boolean on) {
        boolean old = mmaDecode;
        mmaDecode = on;
        return old;
    }

    boolean mmaDecode() { return mmaDecode; }

    /** The split-context kernel the last decode attention ran, and its pieces ("tensor cores, 1 piece"); for tests. */
    String lastDecodeLaunch() {
        if (lastDecodePieces == 0) return "none";
        return (lastDecodeMma ? "tensor cores" : "float32") + ", " + lastDecodePieces + (lastDecodePieces == 1 ? " piece" : " pieces")
                + (lastDecodeKvFirst ? ", heads fastest" : "");
    }

    /** Sets the query rows a warp of the grouped-query flash kernel takes (see {@link #FLASH_GQA_WARP_ROWS_PROPERTY}); returns the old setting. */
    int flashGqaWarpRows(int rows) {
        int old = flashGqaWarpRows;
        flashGqaWarpRows = gqaWarpRows(rows);
        return old;
    }

    private static int gqaWarpRows(int rows) {
        return oneOf(FLASH_GQA_WARP_ROWS_PROPERTY, rows, "a warp of the grouped-query flash kernel takes 16 or 32 query rows", 16, 32);
    }

    /** Turns S on wgmma for the grouped-query flash kernel (see {@link #FLASH_GQA_WGMMA_PROPERTY}) on or off; returns the old setting. */
    boolean flashGqaWgmma(boolean on) {
        boolean old = flashGqaWgmma;
        flashGqaWgmma = on;
        return old;
    }

    /** The name of the flash kernel the last prefill attention launched ("none" before any); for tests. */
    String lastFlashKernel() { return lastFlashKernel; }

    /** Turns P V on wgmma (see {@link #FLASH_GQA_WGMMA_PV_PROPERTY}) on or off; returns the old setting. */
    boolean flashGqaWgmmaPv(boolean on) {
        boolean old = flashGqaWgmmaPv;
        flashGqaWgmmaPv = on;
        return old;
    }

    /** Whether this GPU can run {@link #FLASH_GQA_WGMMA_PROPERTY}'s kernel (sm_90); for tests. */
    boolean wgmmaCapable() { return sm90; }

    /**
     * A grouped-query flash kernel by cache type and head size, the query rows of its work items (GQ_BM times a warp's
     * 16-row tiles) and its threads a block.
     */
    private record GqaVariant(int tileRows, int threads, Kernel bf16d64, Kernel bf16d128, Kernel f16d64, Kernel f16d128) {
        GqaVariant(int tileRows, Kernel bf16d64, Kernel bf16d128, Kernel f16d64, Kernel f16d128) {
            this(tileRows, FLASH_THREADS, bf16d64, bf16d128, f16d64, f16d128);
        }

        /** The kernel for a cache type and head size, or null where the variant has none. */
        Kernel kernel(DType dtype, int headDim) { return byCacheType(dtype, headDim, bf16d64, bf16d128, f16d64, f16d128); }
    }

    /**
     * The grouped-query flash variant the switches select. S runs on wgmma ({@link #FLASH_GQA_WGMMA_PROPERTY}) on an sm_90
     * GPU over 32-key tiles, or 64-key ones with P V there too ({@link #FLASH_GQA_WGMMA_PV_PROPERTY}); 32 rows a warp
     * ({@link #FLASH_GQA_WARP_ROWS_PROPERTY}) apply over 32-key tiles, on wgmma only with both products there, and there
     * overlapped or not ({@link #FLASH_GQA_OVERLAP_PROPERTY}), and overlapped, warp-specialised or not
     * ({@link #FLASH_GQA_WARP_SPECIALIZED_PROPERTY}).
     */
    private GqaVariant gqaVariant() {
        Kernels k = kernels;
        boolean wide = flashGqaWarpRows == 32 && flashGqaKeys == 32;
        if (flashGqaWgmma && sm90 && (flashGqaKeys == 32 || flashGqaWgmmaPv)) {
            if (!flashGqaWgmmaPv) return new GqaVariant(16, k.flashGqaWgBf16D64, k.flashGqaWgBf16D128, k.flashGqaWgF16D64, k.flashGqaWgF16D128);
            if (wide && flashGqaOverlap && flashGqaWarpSpecialized) {
                return new GqaVariant(32, FLASH_WS_THREADS, k.flashGqaWsBf16D64, k.flashGqaWsBf16D128, k.flashGqaWsF16D64, k.flashGqaWsF16D128);
            }
            if (wide && flashGqaOverlap) {
                return new GqaVariant(32, k.flashGqaWgoBf16D64, k.flashGqaWgoBf16D128, k.flashGqaWgoF16D64, k.flashGqaWgoF16D128);
            }
            if (wide) {
                return new GqaVariant(32, k.flashGqaWgvW32Bf16D64, k.flashGqaWgvW32Bf16D128, k.flashGqaWgvW32F16D64,
                        k.flashGqaWgvW32F16D128);
            }
            return flashGqaKeys == 64
                    ? new GqaVariant(16, k.flashGqaWgvK64Bf16D64, k.flashGqaWgvK64Bf16D128, k.flashGqaWgvK64F16D64, k.flashGqaWgvK64F16D128)
                    : new GqaVariant(16, k.flashGqaWgvBf16D64, k.flashGqaWgvBf16D128, k.flashGqaWgvF16D64, k.flashGqaWgvF16D128);
        }
        if (wide) return new GqaVariant(32, k.flashGqaW32Bf16D64, k.flashGqaW32Bf16D128, k.flashGqaW32F16D64, k.flashGqaW32F16D128);
        return flashGqaKeys == 64
                ? new GqaVariant(16, k.flashGqaK64Bf16D64, k.flashGqaK64Bf16D128, k.flashGqaK64F16D64, k.flashGqaK64F16D128)
                : new GqaVariant(16, k.flashGqaBf16D64, k.flashGqaBf16D128, k.flashGqaF16D64, k.flashGqaF16D128);
    }

    /** Turns the grouped-query flash kernel (see {@link #FLASH_GQA_PROPERTY}) on or off; returns the old setting. */
    boolean flashGqa(boolean on) {
        boolean old = flashGqa;
        flashGqa = on;
        return old;
    }

    /**
     * Counts {@code meta}'s work items of {@code tileRows} query rows and its longest query run, unless they are
     * those of the last metadata and tile size.
     */
    private void plan(AttentionMetadata meta, int tileRows) {
        if (meta == planFor && tileRows == planTileRows) return;
        int[] starts = meta.hostQueryStarts();
        int longest = 0, shortRows = 0;
        long items = 0;
        for (int s = 0; s < meta.numSeqs(); s++) {
            int qLen = starts[s + 1] - starts[s];
            longest = Math.max(longest, qLen);
            if (qLen > SPLIT_MAX_QUERY_RUN) {
                items += (qLen + tileRows - 1) / tileRows;
            } else {
                shortRows += qLen;
            }
        }
        planFor = meta;
        planTileRows = tileRows;
        planLongestRun = longest;
        planShortRows = shortRows;
        planItems = (int) Math.min(items, Integer.MAX_VALUE);
        planUploaded = false;
    }

    /**
     * The device address of {@link #plan}'s work list, uploaded on first use: pairs (sequence, first query row
     * within it), one per tile of up to the plan's tile rows ({@link #FLASH_TILE_ROWS}, or {@link
     * GqaVariant#tileRows} for the grouped-query kernel), those with the most keys first so the
     * longest blocks start early and the short ones fill in behind them (sequences of up to {@link
     * #SPLIT_MAX_QUERY_RUN} query rows have none); then the {@link #planShortRows} rows of those sequences,
     * for the split kernel, at byte offset {@code 8 * planItems}. The upload is queued, not waited
     * for; the buffer is reused for later metadata, which is safe because every reader is queued earlier on
     * the same stream.
     */
    private long uploadPlan(AttentionMetadata meta) {
        if (planUploaded) return planWork.address();
        int[] starts = meta.hostQueryStarts(), lens = meta.hostContextLens();
        int window = meta.slidingWindow();
        long[] order = new long[planItems];  // (keys the tile reads, descending) << 32 | item
        int[] seqOf = new int[planItems], firstOf = new int[planItems];
        int n = 0;
        for (int s = 0; s < meta.numSeqs(); s++) {
            int qLen = starts[s + 1] - starts[s];
            if (qLen <= SPLIT_MAX_QUERY_RUN) continue;  // the split kernel's (see SPLIT_MAX_QUERY_RUN)
            for (int first = 0; first < qLen; first += planTileRows) {
                int rows = Math.min(planTileRows, qLen - first);
                int pos0 = lens[s] - qLen + first;
                int keyLo = window > 0 ? Math.max(0, pos0 - window + 1) : 0;
                long keys = pos0 + rows - keyLo;
                seqOf[n] = s;
                firstOf[n] = first;
                order[n] = ((Integer.MAX_VALUE - keys) << 32) | n;
                n++;
            }
        }
        Arrays.sort(order);
        int[] work = new int[2 * planItems + planShortRows];
        for (int i = 0; i < planItems; i++) {
            int item = (int) order[i];
            work[2 * i] = seqOf[item];
            work[2 * i + 1] = firstOf[item];
        }
        // then the rows of the short query runs, for the split kernel
        int at = 2 * planItems;
        for (int s = 0; s < meta.numSeqs(); s++) {
            if (starts[s + 1] - starts[s] <= SPLIT_MAX_QUERY_RUN) {
                for (int r = starts[s]; r < starts[s + 1]; r++) work[at++] = r;
            }
        }
        long bytes = 4L * work.length;
        if (planWork == null || planWork.bytes() < bytes) {
            if (planWork != null) pool.recycle(planWork);
            planWork = pool.obtain(bytes);
        }
        queueCopyIn(MemorySegment.ofArray(work), planWork, 0);
        planUploaded = true;
        return planWork.address();
    }

    /** The host copies of the metadata must describe a valid packing (block ids are not checked). */
    private static void checkPlan(AttentionMetadata meta, CudaKvCache c, int maxBlocks) {
        int[] starts = meta.hostQueryStarts(), lens = meta.hostContextLens();
        int numSeqs = meta.numSeqs();
        if (starts.length != numSeqs + 1 || lens.length != numSeqs || starts[0] != 0 || starts[numSeqs] != meta.numTokens()) {
            throw new IllegalArgumentException("attention: host queryStarts must run from 0 to numTokens=" + meta.numTokens()
                    + " over numSeqs + 1 = " + (numSeqs + 1) + " entries");
        }
        for (int s = 0; s < numSeqs; s++) {
            int qLen = starts[s + 1] - starts[s], ctx = lens[s];
            if (qLen < 0 || ctx < qLen || ctx > (long) maxBlocks * c.blockSize()) {
                throw new IllegalArgumentException("attention: sequence " + s + " has " + qLen + " query rows and context "
                        + ctx + "; need 0 <= rows <= context <= maxBlocksPerSeq (" + maxBlocks + ") x blockSize (" + c.blockSize() + ")");
            }
        }
    }

    @Override
    public void siluMul(Tensor x, Tensor out) {
        CudaTensor xt = floats(x, "siluMul", "x"), ot = floats(out, "siluMul", "out");
        int inner = ot.cols();
        if (xt.rows() != ot.rows() || xt.cols() != 2 * inner) {
            throw shapes("siluMul", "x " + xt.shape() + ", out " + ot.shape(), "need x [n, 2I] and out [n, I]");
        }
        if (ot.size() == 0) return;
        siluMul(xt.address(), DType.F32, ot.address(), DType.F32, ot.rows(), inner);
    }

    /**
     * silu_mul over x [n, 2 inner] into out [n, inner]. The kernel takes eight values a thread where both sides
     * are the same 16-bit format and inner is a multiple of 8 (given 16-byte aligned buffers, which pooled ones
     * are), one otherwise: the grid is sized to match.
     */
    private void siluMul(long x, DType xType, long out, DType outType, int n, int inner) {
        long count = (long) n * inner;
        boolean byEight = xType == outType && xType != DType.F32 && inner % 8 == 0;
        kernels.siluMul.launch(stream, Kernels.elementBlocks(byEight ? count / 8 : count), 1, 256,
                x, out, (long) n, inner, dtypeCode(outType), dtypeCode(xType));
    }

    /** Indices outside x give rows of NaN. */
    @Override
    public void gatherRows(Tensor x, Tensor rows, Tensor out) {
        CudaTensor xt = activations(x, "gatherRows", "x"), it = ints(rows, "gatherRows", "rows"), ot = floats(out, "gatherRows", "out");
        if (it.rows() != 1 || ot.rows() != it.cols() || ot.cols() != xt.cols()) {
            throw shapes("gatherRows", "x " + xt.shape() + ", rows " + it.shape() + ", out " + ot.shape(),
                    "need rows [1, m] and out [m, x.cols]");
        }
        if (ot.size() == 0) return;
        kernels.gatherRows.launch(stream, ot.rows(), 1, 256,
                xt.address(), it.address(), ot.address(), ot.rows(), ot.cols(), xt.rows(), dtypeCode(xt.dtype()));
    }

    /** On the GPU: only {@code rows} ints cross to the host. */
    /** select.cu's sample_rows: threads per block, and the ints one SampleItem is packed into. */
    private static final int SAMPLE_THREADS = 1024, SAMPLE_ITEM_INTS = 10;

    @Override
    public boolean supportsSampling() { return true; }

    /**
     * One block per row to draw (select.cu's sample_rows): the reference's steps and weights bit for bit, its
     * sums in another order (see the kernel). A scratch {@code [draws, vocab]} F32 tensor holds the weights.
     */
    @Override
    public int[] sampleRows(Tensor logits, SampleSpec[] specs) {
        CudaTensor xt = floats(logits, "sampleRows", "logits");
        if (specs.length != xt.rows() || xt.cols() == 0) {
            throw shapes("sampleRows", "logits " + xt.shape() + ", " + specs.length + " specs",
                    "need one spec (or null) per row, and rows of at least one column");
        }
        int[] out = new int[specs.length];
        Arrays.fill(out, NOT_SAMPLED);
        int count = 0;
        for (SampleSpec s : specs) if (s != null) count++;
        if (count == 0) return out;
        int[] packed = packSampleItems(specs, count), rowOf = new int[count];
        for (int r = 0, j = 0; r < specs.length; r++) if (specs[r] != null) rowOf[j++] = r;
        try (CudaTensor items = (CudaTensor) upload(packed, 1, packed.length);
             CudaTensor weights = (CudaTensor) allocate(DType.F32, count, xt.cols());
             CudaTensor tokens = (CudaTensor) allocate(DType.I32, 1, count)) {
            kernels.sampleRows.launch(stream, count, 1, SAMPLE_THREADS, xt.address(), items.address(), weights.address(),
                    tokens.address(), xt.cols());
            int[] got = new int[count];
            copyOut(tokens, MemorySegment.ofArray(got));
            for (int j = 0; j < count; j++) out[rowOf[j]] = got[j];
        }
        return out;
    }

    /**
     * select.cu's {@code SampleItem} array for the {@code count} non-null specs, in row order: {int row, float
     * inv_t, int top_k, float min_p, double top_p, u64 seed, u64 counter}, 40 bytes, as little-endian ints.
     */
    static int[] packSampleItems(SampleSpec[] specs, int count) {
        int[] packed = new int[SAMPLE_ITEM_INTS * count];
        for (int r = 0, j = 0; r < specs.length; r++) {
            SampleSpec s = specs[r];
            if (s == null) continue;
            int at = SAMPLE_ITEM_INTS * j++;
            long topP = Double.doubleToRawLongBits(s.topP());
            packed[at] = r;
            packed[at + 1] = Float.floatToRawIntBits(s.invTemperature());
            packed[at + 2] = s.topK();
            packed[at + 3] = Float.floatToRawIntBits(s.minP());
            packed[at + 4] = (int) topP;                // little-endian halves of the 8-byte fields
            packed[at + 5] = (int) (topP >>> 32);
            packed[at + 6] = (int) s.seed();
            packed[at + 7] = (int) (s.seed() >>> 32);
            packed[at + 8] = (int) s.counter();
            packed[at + 9] = (int) (s.counter() >>> 32);
        }
        return packed;
    }

    @Override
    public boolean supportsAsyncSteps() { return true; }

    /**
     * argmax_rows into a device tensor, then its copy into a pinned host slot, queued; the slot's event says when
     * the picks are there. Slots are few and reused: a step and the one launched after it hold one each.
     */
    @Override
    public PendingTokens argmaxRowsAsync(Tensor x) {
        CudaTensor xt = floats(x, "argmaxRowsAsync", "x");
        int rows = xt.rows();
        if (rows == 0 || xt.cols() == 0) {
            throw shapes("argmaxRowsAsync", "x " + xt.shape(), "need at least one row of at least one column");
        }
        CudaTensor out = (CudaTensor) allocate(DType.I32, 1, rows);
        HostSlot slot = null;
        try {
            kernels.argmaxRows.launch(stream, rows, 1, ARGMAX_THREADS, xt.address(), out.address(), rows, xt.cols());
            slot = hostSlot(4L * rows);
            stream.copyToHost(slot.buffer.segment(), out.buffer(), 0, 4L * rows);
            slot.ready.record(stream);
        } catch (RuntimeException | Error e) {
            if (slot != null) releaseSlot(slot);
            out.close();
            throw e;
        }
        HostSlot held = slot;
        return new PendingTokens() {
            private boolean closed;

            @Override public Tensor tokens() { return out; }

            @Override
            public int[] await() {
                if (closed) throw new IllegalStateException("argmaxRowsAsync: picks read after close");
                held.ready.synchronize();
                int[] ids = new int[rows];
                MemorySegment.copy(held.buffer.segment(), java.lang.foreign.ValueLayout.JAVA_INT, 0, ids, 0, rows);
                return ids;
            }

            @Override
            public void close() {
                if (closed) return;
                closed = true;
                out.close();
                releaseSlot(held);  // its copy was queued before anything that could take the slot again
            }
        };
    }

    /** A pinned host buffer and the event recorded after the copy into it. */
    private record HostSlot(PinnedBuffer buffer, Event ready) {}

    private final java.util.ArrayDeque<HostSlot> freeSlots = new java.util.ArrayDeque<>();
    private final List<HostSlot> allSlots = new java.util.ArrayList<>();

    // slots are taken on the stream's thread and may be given back from an engine thread without the backend's lock
    private HostSlot hostSlot(long bytes) {
        synchronized (freeSlots) {
            for (var it = freeSlots.iterator(); it.hasNext(); ) {
                HostSlot s = it.next();
                if (s.buffer.bytes() >= bytes) {
                    it.remove();
                    return s;  // a copy still pending into it (closed unread) lands before the next one: same stream
                }
            }
            HostSlot s = new HostSlot(context.allocatePinned(Math.max(bytes, 64L << 10)), context.createEvent());
            allSlots.add(s);
            return s;
        }
    }

    private void releaseSlot(HostSlot slot) {
        synchronized (freeSlots) {
            freeSlots.push(slot);
        }
    }

    @Override
    public void forwardTokens(Tensor tokens, int[] srcRows, Tensor ids, int[] dstRows) {
        CudaTensor from = ints(tokens, "forwardTokens", "tokens"), into = ints(ids, "forwardTokens", "ids");
        int n = srcRows.length;
        if (dstRows.length != n) {
            throw new IllegalArgumentException("forwardTokens: " + n + " source rows for " + dstRows.length + " targets");
        }
        if (n == 0) return;
        int[] pairs = new int[2 * n];
        for (int i = 0; i < n; i++) {
            if (srcRows[i] < 0 || srcRows[i] >= from.size() || dstRows[i] < 0 || dstRows[i] >= into.size()) {
                throw new IllegalArgumentException("forwardTokens: pair " + i + " (" + srcRows[i] + " -> " + dstRows[i]
                        + ") outside tokens " + from.shape() + " or ids " + into.shape());
            }
            pairs[i] = srcRows[i];
            pairs[n + i] = dstRows[i];
        }
        // queued through the staging ring: nothing here waits for the stream, which holds the previous step still running
        try (CudaTensor p = (CudaTensor) upload(pairs, 1, 2 * n)) {
            kernels.forwardTokens.launch(stream, Math.min((n + 255) / 256, 1024), 1, 256, from.address(), p.address(),
                    into.address(), n);
        }
    }

    @Override
    public int[] argmaxRows(Tensor x) {
        CudaTensor xt = floats(x, "argmaxRows", "x");
        int rows = xt.rows();
        if (rows == 0) return new int[0];
        if (xt.cols() == 0) throw shapes("argmaxRows", "x " + xt.shape(), "rows need at least one column");
        try (CudaTensor out = (CudaTensor) allocate(DType.I32, 1, rows)) {
            kernels.argmaxRows.launch(stream, rows, 1, ARGMAX_THREADS, xt.address(), out.address(), rows, xt.cols());
            int[] ids = new int[rows];
            copyOut(out, MemorySegment.ofArray(ids));
            return ids;
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        try {
            stream.synchronize();
        } finally {
            if (planWork != null) planWork.close();
            for (HostSlot slot : allSlots) {
                slot.ready.close();
                slot.buffer.close();
            }
            pool.release();
            graphPool.release();
            for (Event e : allFences) e.close();
            staging.close();
            gemm.close();
            kernels.close();
            stream.close();
            context.close();
        }
    }

    // ---- helpers ----------------------------------------------------------------------------

    /** Runs the probe kernel: {@code out[i] = 2i + 1} for {@code n} values, and returns them. */
    float[] probe(int n) {
        try (CudaTensor t = (CudaTensor) allocate(DType.F32, 1, n)) {
            kernels.probe.launch(stream, Kernels.elementBlocks(n), 1, 256, t.address(), n);
            return download(t);
        }
    }

    private static CudaTensor cuda(Tensor t, String op, String role) {
        if (t instanceof CudaTensor c) return c;
        throw new IllegalArgumentException(op + ": " + role + " is " + (t == null ? "null" : t.getClass().getName())
                + ", not a tensor of the cuda backend");
    }

    private static CudaTensor floats(Tensor t, String op, String role) {
        CudaTensor c = cuda(t, op, role);
        if (c.dtype() != DType.F32) throw new IllegalArgumentException(op + ": " + role + " is " + c.dtype() + ", expected F32");
        return c;
    }

    /** A float32 tensor, or one in a 16-bit weight format (activations {@link #activationFormat} allows). */
    private static CudaTensor activations(Tensor t, String op, String role) {
        CudaTensor c = cuda(t, op, role);
        if (c.dtype() != DType.F32 && c.dtype() != DType.BF16 && c.dtype() != DType.F16) {
            throw new IllegalArgumentException(op + ": " + role + " is " + c.dtype() + ", expected F32, BF16 or F16");
        }
        return c;
    }

    private static CudaTensor ints(Tensor t, String op, String role) {
        CudaTensor c = cuda(t, op, role);
        if (c.dtype() != DType.I32) throw new IllegalArgumentException(op + ": " + role + " is " + c.dtype() + ", expected I32");
        return c;
    }

    private static CudaWeight cuda(Weight w) {
        if (w instanceof CudaWeight c) return c;
        throw new IllegalArgumentException("weight " + (w == null ? "null" : "'" + w.name() + "' of " + w.getClass().getName())
                + " does not belong to the cuda backend");
    }

    private static CudaKvCache cuda(KvCache k) {
        if (k instanceof CudaKvCache c) return c;
        throw new IllegalArgumentException("KV cache " + k + " does not belong to the cuda backend");
    }

    private static boolean sameShape(Tensor a, Tensor b) { return a.rows() == b.rows() && a.cols() == b.cols(); }

    private static IllegalArgumentException shapes(String op, String got, String rule) {
        return new IllegalArgumentException(op + ": shape mismatch: " + got + " (" + rule + ")");
    }

    @Override
    public String toString() { return "CudaBackend(GPU " + context.ordinal() + ")"; }
}
