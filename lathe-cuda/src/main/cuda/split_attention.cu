// Paged attention for decode steps (and short prefills), the context split across blocks. Two kernels over the
// same grid and pieces: split_attention_mma (further down) runs 16-bit caches of head size 64 or 128, with at
// most 16 query heads per KV head, on tensor cores, one warp a block; the lane-per-key kernel described here runs the rest (and 16-bit caches when
// CudaBackend.MMA_DECODE_PROPERTY is off), in float32 throughout.
//
// Grid (query row, KV head, context piece), or (KV head, query row, piece) with heads_fastest; 4 warps a block. The query heads that share the KV head (GQA)
// are spread over the warps. For 16-bit caches the block loads each tile of 32 key and value rows into
// shared memory once for all of them; F32 caches are read by each warp from global memory (L2). A warp
// walks its piece 32 keys at a time: lane i computes the score of key t0 + i over the whole head (16-byte
// loads of its key row, q broadcast from shared memory), the warp takes one max and one sum per 32 keys for
// the online softmax, then the 32 value rows are added in order, lane i holding dims [i * DPL, (i + 1) *
// DPL) of the head. Scores and sums are float32.
//
// With one piece (enough rows x KV heads to fill the GPU) the block writes the output; with several, each
// writes its (max, sum, unnormalised acc) and attention_combine merges them. Head dims: multiples of 32 up
// to 256 (DPL = head_dim / 32); CudaBackend sends other sizes to attention.cu's row kernel.
#include "mma_attention.cuh"
using namespace lathe;

#define SPLIT_WARPS 4
#define SPLIT_MAX_HEAD_DIM 256

struct SplitAttentionParams {
    const float* q;             // [num_tokens, num_heads * head_dim]
    const void* k_cache;        // this layer: [blocks, block_size, num_kv_heads, head_dim] in `dtype`
    const void* v_cache;        // same layout
    void* out;                  // [num_tokens, num_heads * head_dim] in `out_dtype`
    float* part_acc;            // [num_tokens, num_heads, splits, head_dim] when splits > 1
    float* part_ml;             // [num_tokens, num_heads, splits, 2] when splits > 1
    const int* query_starts;    // [num_seqs + 1]
    const int* context_lens;    // [num_seqs]
    const int* block_tables;    // [num_seqs, max_blocks_per_seq]
    const int* row_list;        // null: block x is query row x; else block x serves query row row_list[x]
    int num_seqs;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int block_size;
    int max_blocks_per_seq;
    int sliding_window;         // > 0: attend to the last sliding_window positions only
    int dtype;
    int splits;                 // context pieces per row
    int chunk;                  // keys per piece, a multiple of 32
    int out_dtype;              // F32, or the 16-bit format the next GEMM takes
    float scale;
    int heads_fastest;          // 1: grid (KV head, row, piece), so a row's KV heads run side by side; 0: (row, KV head, piece)
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// dot(q_s[0 .. D), key row) with 16-byte loads of the key row (F32 caches)
template <typename T> struct KeyDot;
template <> struct KeyDot<float> {
    __device__ static float dot(const float* q, const void* base, long long off, int D) {
        const float4* k = reinterpret_cast<const float4*>(static_cast<const float*>(base) + off);
        float s = 0.f;
        for (int c = 0; c < D / 4; c++) {
            float4 v = k[c];
            s = fmaf(q[c * 4], v.x, s);
            s = fmaf(q[c * 4 + 1], v.y, s);
            s = fmaf(q[c * 4 + 2], v.z, s);
            s = fmaf(q[c * 4 + 3], v.w, s);
        }
        return s;
    }
};

template <typename T> __device__ __forceinline__ float load_t(const void* base, long long i) {
    return static_cast<float>(static_cast<const T*>(base)[i]);
}

// What a block works on: grid (query row, or its index in row_list; KV head; context piece), x and y swapped with
// heads_fastest, the piece's keys
// lo..hi of the row's sequence (empty when lo > hi), that sequence's block table and the query heads per KV head.
struct Piece {
    int row, kv_head, piece, lo, hi, group;
    const int* table;
};

__device__ __forceinline__ Piece piece_of_block(const SplitAttentionParams& p) {
    Piece w;
    const int r = p.heads_fastest ? blockIdx.y : blockIdx.x;
    w.row = p.row_list != nullptr ? p.row_list[r] : r;
    w.kv_head = p.heads_fastest ? blockIdx.x : blockIdx.y;
    w.piece = blockIdx.z;
    const RowPlace place = place_of_row(p.query_starts, p.context_lens, p.num_seqs, w.row);
    w.table = p.block_tables + (long long)place.seq * p.max_blocks_per_seq;
    w.group = p.num_heads / p.num_kv_heads;
    const int first = p.sliding_window > 0 ? max(0, place.pos - p.sliding_window + 1) : 0;
    w.lo = first + w.piece * p.chunk;
    w.hi = min(place.pos, w.lo + p.chunk - 1);
    return w;
}

// One step of the online softmax over the warp's 32 keys (lane i's score s, valid or not): the new running max
// m, the running sum l, acc rescaled; returns lane i's weight e^(s - m).
template <int DPL>
__device__ __forceinline__ float online_step(float s, bool valid, float& m, float& l, float (&acc)[DPL]) {
    const float m_new = fmaxf(m, warp_max(s));  // finite: lane 0's key is always valid
    const float e = valid ? expf(s - m_new) : 0.f;
    const float correction = expf(m - m_new);   // 0 on the first tile (m = -inf)
    l = l * correction + warp_sum(e);
#pragma unroll
    for (int i = 0; i < DPL; i++) acc[i] *= correction;
    m = m_new;
    return e;
}

// A head's result: normalised into out with one piece, else its (max, sum, unnormalised acc) for attention_combine.
template <int DPL>
__device__ __forceinline__ void store_head(const SplitAttentionParams& p, int row, int head, int piece, const float (&acc)[DPL],
                                           float m, float l, int lane) {
    constexpr int D = DPL * 32;
    const long long rh = (long long)row * p.num_heads + head;
    if (p.splits == 1) {
        const float inv = 1.f / l;
        const long long o = rh * D + lane * DPL;
#pragma unroll
        for (int i = 0; i < DPL; i++) store_f(p.out, p.out_dtype, o + i, acc[i] * inv);
    } else {
        const long long at = rh * p.splits + piece;
        float* o = p.part_acc + at * D + lane * DPL;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[i] = acc[i];
        if (lane == 0) {
            p.part_ml[2 * at] = m;      // -inf for an empty piece
            p.part_ml[2 * at + 1] = l;  // 0 for an empty piece
        }
    }
}

template <typename T, int DPL>
__device__ __forceinline__ void split_attention(const SplitAttentionParams& p, float (*q_s)[SPLIT_MAX_HEAD_DIM]) {
    constexpr int D = DPL * 32;
    const Piece w = piece_of_block(p);
    const int row = w.row, kv_head = w.kv_head, piece = w.piece, lo = w.lo, hi = w.hi, group = w.group;
    const int* table = w.table;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    for (int g = warp; g < group; g += SPLIT_WARPS) {
        const int head = kv_head * group + g;
        const float* qrow = p.q + ((long long)row * p.num_heads + head) * D;
        for (int d = lane; d < D; d += 32) q_s[warp][d] = qrow[d];
        __syncwarp();

        float m = -INFINITY, l = 0.f, acc[DPL];
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[i] = 0.f;

        for (int t0 = lo; t0 <= hi; t0 += 32) {
            const int t = t0 + lane;
            const bool valid = t <= hi;
            long long off = 0;
            float s = -INFINITY;
            if (valid) {
                long long slot = (long long)table[t / p.block_size] * p.block_size + t % p.block_size;
                off = (slot * p.num_kv_heads + kv_head) * D;
                s = KeyDot<T>::dot(q_s[warp], p.k_cache, off, D) * p.scale;
            }
            const float e = online_step<DPL>(s, valid, m, l, acc);
            const int n = min(32, hi - t0 + 1);
            for (int j = 0; j < n; j++) {
                const float ej = __shfl_sync(0xffffffffu, e, j);
                const long long oj = __shfl_sync(0xffffffffu, off, j);
#pragma unroll
                for (int i = 0; i < DPL; i++) acc[i] = fmaf(ej, load_t<T>(p.v_cache, oj + lane * DPL + i), acc[i]);
            }
        }

        store_head<DPL>(p, row, head, piece, acc, m, l, lane);
        __syncwarp();  // q_s[warp] is rewritten for the next head
    }
}

// dot(q[0 .. D), key row in shared memory) for 16-bit rows, 16 bytes at a time

template <typename T, int D>
__device__ __forceinline__ float smem_dot(const float* q, const unsigned char* row) {
    using P = typename Pair16<T>::type;
    const int4* k = reinterpret_cast<const int4*>(row);
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < D / 8; c++) {
        int4 raw = k[c];
        const P* h = reinterpret_cast<const P*>(&raw);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 v = Pair16<T>::widen(h[i]);
            s = fmaf(q[c * 8 + 2 * i], v.x, s);
            s = fmaf(q[c * 8 + 2 * i + 1], v.y, s);
        }
    }
    return s;
}

// Rows of a 16-bit K or V tile in shared memory: D values and 16 bytes of padding, so that the 32 lanes of
// a warp, each reading its own key row at the same column, hit different banks.
template <typename T, int DPL> struct Tile {
    static constexpr int D = DPL * 32;
    static constexpr int ROW_BYTES = D * (int)sizeof(T);
    static constexpr int STRIDE = ROW_BYTES + 16;
    static constexpr int CHUNKS = ROW_BYTES / 16;  // 16-byte pieces of a row
    static constexpr int BYTES = 2 * 32 * STRIDE;  // K tile, then V tile
};

// The same work as split_attention for 16-bit caches, with the block's four warps copying each tile of 32
// key and value rows into shared memory together (16-byte cp.async copies, once for every query head of the
// KV head) before each warp scores and accumulates its own head from there. Where two tiles fit in the
// static shared memory (head dims up to 160), the copy of the next tile is in flight while the warps work
// on this one. Lane i finds the cache slot of key t0 + i once per tile and the copying threads take it from
// their warp. Rows past the piece are zero-filled so that their weight 0 never meets a NaN. When the group
// has more heads than warps, the block walks its piece once per four heads.
template <typename T, int DPL, int STAGES>
__device__ __forceinline__ void split_attention_tiled(const SplitAttentionParams& p, float (*q_s)[SPLIT_MAX_HEAD_DIM],
                                                      unsigned char* kv_s) {
    using TL = Tile<T, DPL>;
    using P = typename Pair16<T>::type;
    constexpr int D = TL::D;
    const Piece w = piece_of_block(p);
    const int row = w.row, kv_head = w.kv_head, piece = w.piece, lo = w.lo, hi = w.hi, group = w.group;
    const int* table = w.table;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int tiles = lo <= hi ? (hi - lo) / 32 + 1 : 0;
    const unsigned char* k_base = static_cast<const unsigned char*>(p.k_cache);
    const unsigned char* v_base = static_cast<const unsigned char*>(p.v_cache);

    // queues the copy of the tile of keys t0 .. t0 + 31 into stage `stage` (K rows, then V rows)
    auto load = [&](int t0, int stage) {
        const int t = t0 + lane;
        const long long mine = t <= hi
                ? ((long long)table[t / p.block_size] * p.block_size + t % p.block_size) * p.num_kv_heads * TL::ROW_BYTES
                        + (long long)kv_head * TL::ROW_BYTES
                : -1;
        unsigned char* k_s = kv_s + stage * TL::BYTES;
        const uint32_t k_dst = smem_addr(k_s), v_dst = smem_addr(k_s + 32 * TL::STRIDE);
#pragma unroll
        for (int it = 0; it < DPL; it++) {  // 32 rows x CHUNKS pieces = DPL x 128 threads
            const int idx = threadIdx.x + it * SPLIT_WARPS * 32;
            const int r = idx / TL::CHUNKS, c = idx - r * TL::CHUNKS;
            const long long at = __shfl_sync(0xffffffffu, mine, r);
            const int bytes = at >= 0 ? 16 : 0;
            const long long from = at >= 0 ? at + c * 16 : 0;
            const uint32_t to = r * TL::STRIDE + c * 16;
            cp_async16(k_dst + to, k_base + from, bytes);
            cp_async16(v_dst + to, v_base + from, bytes);
        }
    };

    for (int g0 = 0; g0 < group; g0 += SPLIT_WARPS) {
        const int g = g0 + warp;
        const bool active = g < group;
        const int head = kv_head * group + g;
        if (active) {
            const float* qrow = p.q + ((long long)row * p.num_heads + head) * D;
            for (int d = lane; d < D; d += 32) q_s[warp][d] = qrow[d];
        }
        __syncwarp();

        float m = -INFINITY, l = 0.f, acc[DPL];
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[i] = 0.f;

        if (tiles > 0) load(lo, 0);
        cp_async_commit();
        for (int i = 0; i < tiles; i++) {
            const int t0 = lo + 32 * i;
            if (STAGES == 2) {
                if (i + 1 < tiles) load(t0 + 32, (i + 1) & 1);  // that stage's last readers passed the sync below
                cp_async_commit();
                cp_async_wait<1>();  // this thread's copies of tile i have landed
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();  // ... and every thread's
            const unsigned char* k_s = kv_s + (STAGES == 2 ? (i & 1) : 0) * TL::BYTES;
            const unsigned char* v_s = k_s + 32 * TL::STRIDE;
            if (active) {
                const bool valid = t0 + lane <= hi;
                const float s = valid ? smem_dot<T, D>(q_s[warp], k_s + lane * TL::STRIDE) * p.scale : -INFINITY;
                const float e = online_step<DPL>(s, valid, m, l, acc);
#pragma unroll 8
                for (int j = 0; j < 32; j++) {
                    const float ej = __shfl_sync(0xffffffffu, e, j);
                    const unsigned char* vr = v_s + j * TL::STRIDE + lane * DPL * (int)sizeof(T);
                    if constexpr (DPL % 2 == 0) {
#pragma unroll
                        for (int d = 0; d < DPL / 2; d++) {
                            const float2 v = Pair16<T>::widen(reinterpret_cast<const P*>(vr)[d]);
                            acc[2 * d] = fmaf(ej, v.x, acc[2 * d]);
                            acc[2 * d + 1] = fmaf(ej, v.y, acc[2 * d + 1]);
                        }
                    } else {
#pragma unroll
                        for (int d = 0; d < DPL; d++) acc[d] = fmaf(ej, static_cast<float>(reinterpret_cast<const T*>(vr)[d]), acc[d]);
                    }
                }
            }
            __syncthreads();  // every warp is done with this stage before it is filled again
            if (STAGES == 1 && i + 1 < tiles) {
                load(t0 + 32, 0);
                cp_async_commit();
            }
        }

        if (active) store_head<DPL>(p, row, head, piece, acc, m, l, lane);
        __syncwarp();  // q_s[warp] is rewritten for the next heads
    }
}

// The same work on tensor cores for 16-bit caches of head size 64 or 128 and up to 16 query heads per KV head
// (CudaBackend.MMA_DECODE_PROPERTY): one warp a block, over the same grid (query row, KV head, context piece; x and y swapped with heads_fastest).
// The row's query heads of the KV head are the 16 rows of the mma's A operand (head g and g + 8 for a thread,
// zero past the group), so one pass over the piece's keys scores every head of the group at once. The warp
// copies tiles of MD_BN keys, K and V, into shared memory (double-buffered: tile j + 1 is in flight while tile
// j is used) and runs the flash kernels' tile steps on them (mma_attention.cuh): S = Q K^T, the online
// softmax in F32 masking keys past the piece, P rounded to the cache type, O += P V. Q is rounded to the cache
// type once. Compared with split_attention_tiled this trades F32 products for 16-bit ones, the flash kernels'
// numerics, to issue a small fraction of the instructions per key: the lane-per-key kernel computes every
// product of every head with scalar FMAs, which held decode attention well below the memory's speed.
#define MD_BN 32

template <typename T, int D>
__device__ __forceinline__ void split_attention_mma(const SplitAttentionParams& p) {
    constexpr int KC = D / 16, NB = MD_BN / 8, DB = D / 8;
    constexpr int CHUNKS = D / 8;           // 16-byte pieces of a K or V row
    constexpr int ROWS_AT_ONCE = 32 / CHUNKS;  // rows one copy instruction of the warp covers
    __shared__ __align__(128) uint16_t k_tile[2][MD_BN * D];
    __shared__ __align__(128) uint16_t v_tile[2][MD_BN * D];

    const Piece w = piece_of_block(p);
    const int lane = threadIdx.x & 31;
    const int g = lane >> 2, t4 = lane & 3, mi = lane >> 3, mr = lane & 7;
    const int head_a = w.kv_head * w.group + g;  // this thread's rows: heads head_a and head_a + 8 of the group
    const bool va = g < w.group, vb = g + 8 < w.group;

    uint32_t qf[KC][4];
    const float* qa = p.q + ((long long)w.row * p.num_heads + head_a) * D;
    q_fragments<T, D>(qf, qa, qa + 8 * D, va, vb, t4);

    float o[DB][4];
#pragma unroll
    for (int i = 0; i < DB; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;
    const float c = p.scale * 1.4426950408889634f;  // scores in log2 units
    const BlockDiv blocks(p.block_size);
    const uint16_t* kc = static_cast<const uint16_t*>(p.k_cache);
    const uint16_t* vc = static_cast<const uint16_t*>(p.v_cache);
    const int tiles = w.lo <= w.hi ? (w.hi - w.lo) / MD_BN + 1 : 0;

    // queues keys t0 .. t0 + MD_BN - 1 into `stage`: lane i finds the cache row of key t0 + i (-1 past the
    // piece), then each copy instruction of the warp moves ROWS_AT_ONCE whole rows, K and V
    auto load = [&](int t0, int stage) {
        const int t = t0 + lane;
        const long long mine = t <= w.hi ? (blocks.slot(w.table, t) * p.num_kv_heads + w.kv_head) * D : -1;
        const uint32_t k_dst = smem_addr(k_tile[stage]), v_dst = smem_addr(v_tile[stage]);
#pragma unroll
        for (int i = 0; i < MD_BN / ROWS_AT_ONCE; i++) {
            const int key = i * ROWS_AT_ONCE + lane / CHUNKS, chunk = lane % CHUNKS;
            const long long at = __shfl_sync(0xffffffffu, mine, key);
            const long long from = at >= 0 ? at + chunk * 8 : 0;
            const int bytes = at >= 0 ? 16 : 0;  // zero-filled past the piece
            const uint32_t to = tile_offset<D>(key, chunk);
            cp_async16(k_dst + to, kc + from, bytes);
            cp_async16(v_dst + to, vc + from, bytes);
        }
    };

    if (tiles > 0) load(w.lo, 0);
    cp_async_commit();
    for (int it = 0; it < tiles; it++) {
        const int k0 = w.lo + it * MD_BN;
        if (it + 1 < tiles) load(k0 + MD_BN, (it + 1) & 1);  // that stage's readers passed the __syncwarp below
        cp_async_commit();
        cp_async_wait<1>();  // this lane's copies of tile it have landed ...
        __syncwarp();        // ... and every lane's
        float s[NB][4];
        qk_tile<T, D, NB>(s, qf, smem_addr(k_tile[it & 1]), mi, mr);
        // keys past the piece's last (zero-filled, or another piece's) are masked; the piece starts inside the window
        uint32_t pf[MD_BN / 16][4];
        softmax_tile<T, NB, DB>(s, pf, o, m_a, m_b, l_a, l_b, k0, w.hi, w.hi, 0, k0 + MD_BN - 1 > w.hi, c, t4);
        pv_tile<T, D, MD_BN / 16>(&o, &pf, smem_addr(v_tile[it & 1]), mi, mr);
        __syncwarp();  // every lane is done with this stage before it is filled again
    }

    quad_sums(l_a, l_b);  // rows past the group are never stored
    const long long rh_a = (long long)w.row * p.num_heads + head_a;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        if (!(half == 0 ? va : vb)) continue;
        const long long rh = rh_a + 8 * half;
        const float l = half == 0 ? l_a : l_b, m = half == 0 ? m_a : m_b;
        if (p.splits == 1) {
            const float inv = 1.f / l;  // every row has at least its own key
#pragma unroll
            for (int i = 0; i < DB; i++) {
                const long long at = rh * D + i * 8 + 2 * t4;
                store_f(p.out, p.out_dtype, at, o[i][2 * half] * inv);
                store_f(p.out, p.out_dtype, at + 1, o[i][2 * half + 1] * inv);
            }
        } else {
            const long long at = rh * p.splits + w.piece;
            float* acc = p.part_acc + at * D;
#pragma unroll
            for (int i = 0; i < DB; i++) {
                *reinterpret_cast<float2*>(acc + i * 8 + 2 * t4) = make_float2(o[i][2 * half], o[i][2 * half + 1]);
            }
            if (t4 == 0) {
                // attention_combine works in natural-log units: m / log2(e); -inf for an empty piece, with l = 0
                p.part_ml[2 * at] = m * 0.6931471805599453f;
                p.part_ml[2 * at + 1] = l;
            }
        }
    }
}

// One kernel per head size (DPL = head_dim / 32), so each keeps only the registers its size needs. 16-bit
// caches go through shared-memory tiles; F32 caches read K and V rows straight from global memory.
template <int DPL>
__device__ __forceinline__ void split_attention_any(const SplitAttentionParams& p) {
    // two tile stages where they fit beside q_s in the 48 KB of static shared memory
    constexpr int STAGES = 2 * Tile<__half, DPL>::BYTES + SPLIT_WARPS * SPLIT_MAX_HEAD_DIM * 4 <= 48 * 1024 ? 2 : 1;
    __shared__ __align__(16) float q_s[SPLIT_WARPS][SPLIT_MAX_HEAD_DIM];
    __shared__ __align__(16) unsigned char kv_s[STAGES * Tile<__half, DPL>::BYTES];
    switch (p.dtype) {
        case DT_BF16: split_attention_tiled<__nv_bfloat16, DPL, STAGES>(p, q_s, kv_s); break;
        case DT_F16: split_attention_tiled<__half, DPL, STAGES>(p, q_s, kv_s); break;
        default: split_attention<float, DPL>(p, q_s);
    }
}

#define SPLIT_KERNEL(DPL) \
    extern "C" __global__ void __launch_bounds__(SPLIT_WARPS * 32) split_attention_##DPL(const SplitAttentionParams p) { LATHE_PDL_WAIT(); \
        split_attention_any<DPL>(p); \
    }
SPLIT_KERNEL(1)
SPLIT_KERNEL(2)
SPLIT_KERNEL(3)
SPLIT_KERNEL(4)
SPLIT_KERNEL(5)
SPLIT_KERNEL(6)
SPLIT_KERNEL(7)
SPLIT_KERNEL(8)

// split_attention_mma entries: grid (rows, KV heads, pieces), or (KV heads, rows, pieces) with heads_fastest, one warp
// a block; see split_attention_mma
#define SPLIT_MMA_KERNEL(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(32) NAME(const SplitAttentionParams p) { LATHE_PDL_WAIT(); \
        split_attention_mma<T, D>(p); \
    }
SPLIT_MMA_KERNEL(split_attention_mma_bf16_d64, __nv_bfloat16, 64)
SPLIT_MMA_KERNEL(split_attention_mma_bf16_d128, __nv_bfloat16, 128)
SPLIT_MMA_KERNEL(split_attention_mma_f16_d64, __half, 64)
SPLIT_MMA_KERNEL(split_attention_mma_f16_d128, __half, 128)

struct CombineParams {
    const float* part_acc;  // [rows, heads, splits, head_dim]
    const float* part_ml;   // [rows, heads, splits, 2]
    void* out;              // [rows, heads * head_dim] in `out_dtype`
    int heads;
    int head_dim;
    int splits;
    int out_dtype;          // F32, or the 16-bit format the next GEMM takes
};

// One block per (row, head): out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M the largest m_s.
extern "C" __global__ void attention_combine(const CombineParams p) {
    LATHE_PDL_WAIT();
    const long long rh = (long long)blockIdx.x * p.heads + blockIdx.y;
    const float* ml = p.part_ml + rh * p.splits * 2;
    float big = -INFINITY;
    for (int s = 0; s < p.splits; s++) big = fmaxf(big, ml[2 * s]);
    float total = 0.f;
    for (int s = 0; s < p.splits; s++) {
        float m = ml[2 * s];
        if (m != -INFINITY) total += ml[2 * s + 1] * expf(m - big);
    }
    const float inv = 1.f / total;
    const float* acc = p.part_acc + rh * p.splits * p.head_dim;
    for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
        float v = 0.f;
        for (int s = 0; s < p.splits; s++) {
            float m = ml[2 * s];
            if (m != -INFINITY) v = fmaf(acc[(long long)s * p.head_dim + d], expf(m - big), v);
        }
        store_f(p.out, p.out_dtype, rh * p.head_dim + d, v * inv);
    }
}
