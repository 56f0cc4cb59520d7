// Prefill attention on tensor cores, flash style: paged KV cache in BF16 or F16, causal, grouped query heads,
// optional sliding window. Same semantics as paged_attention (attention.cu); CudaBackend picks this kernel
// when a step has a long query run and the cache is 16-bit, and the old kernel otherwise.
//
// Work: one block of FA_WARPS warps per (work item, head). A work item, listed by the host, is up to FA_BM
// consecutive query rows of one sequence (its rows first..first+FA_BM-1, fewer at the end of the sequence).
// Warp w owns rows 16w..16w+15 of the tile. The block walks the keys its rows need, FA_BN at a time:
// from the window start of its first row (0 without a window) to the position of its last row, so
// tiles above the causal diagonal are never visited.
//
// Per key tile: K and V rows are gathered from the paged cache into shared memory with cp.async (16-byte
// pieces, zero-filled past the last needed key), then each warp computes S = Q K^T (mma m16n8k16, Q
// rounded to the cache type once, held in registers), keeps an online softmax in F32 (running max m and
// per-thread partial sums l), rounds P to the cache type and accumulates O += P V (mma, F32 accumulators).
// V of tile j loads while S of tile j is computed, K of tile j+1 while P V of tile j is.
//
// The mma fragments and the tile layout are described in mma_attention.cuh.
#include "mma_attention.cuh"
using namespace lathe;

#define FA_WARPS 4
#define FA_BM (FA_WARPS * 16)  // query rows per block
#define FA_BN 64               // keys per tile

struct FlashAttentionParams {
    const void* q;              // rope_cos null: [num_tokens, num_heads * head_dim] F32, rotated; else see rope_cos
    const void* k_cache;        // this layer: [blocks, block_size, num_kv_heads, head_dim], BF16 or F16
    const void* v_cache;        // same layout
    void* out;                  // [num_tokens, num_heads * head_dim] in `out_dtype`
    const int* work;            // [num_items, 2]: (sequence, first query row of the item within the sequence)
    const int* query_starts;    // [num_seqs + 1]
    const int* context_lens;    // [num_seqs]
    const int* block_tables;    // [num_seqs, max_blocks_per_seq]
    int num_heads;
    int num_kv_heads;
    int block_size;
    int max_blocks_per_seq;
    int sliding_window;         // > 0: attend to the last sliding_window positions only
    int out_dtype;              // F32, or the cache's 16-bit format T (the format the next GEMM takes)
    float scale;
    // Not null: q is the qkv projection in T, rows of q_stride values with the query heads first, not yet rotated; the
    // kernels rotate the queries as they load them by these tables' rows ([num_tokens, head_dim / 2] F32 each, the
    // rows rope_write_kv reads), so that rope_write_kv need not write them.
    const float* rope_cos;
    const float* rope_sin;
    int q_stride;
};

namespace {

// Queues the copy of keys k0..k0+FA_BN-1 (rows past `last` are zero-filled) into `tile`.
template <int D>
__device__ __forceinline__ void load_tile(uint32_t tile, const uint16_t* cache, const int* table, int k0, int last,
                                          const BlockDiv& blocks, int num_kv_heads, int kv_head) {
    constexpr int CHUNKS = D / 8;
    static_assert(FA_BN * CHUNKS % (FA_WARPS * 32) == 0, "the block's threads share the tile's chunks evenly");
#pragma unroll
    for (int i = 0; i < FA_BN * CHUNKS / (FA_WARPS * 32); i++) {
        int idx = threadIdx.x + i * FA_WARPS * 32;
        int key = idx / CHUNKS, chunk = idx % CHUNKS;
        int t = k0 + key;
        const uint16_t* src = cache;
        int bytes = 0;
        if (t <= last) {
            src = cache + (blocks.slot(table, t) * num_kv_heads + kv_head) * D + chunk * 8;
            bytes = 16;
        }
        cp_async16(tile + tile_offset<D>(key, chunk), src, bytes);
    }
}

// Byte offset of chunk `chunk` (8 values) of key row `key` in a K or V tile of BN rows laid out for wgmma (WG): the
// tile's d range in 64-value halves, each half BN rows of 128 bytes, chunk c of row r at c ^ (r & 7) within its
// row: with 128-byte swizzle, the canonical K-major layout of K for S = Q K^T (8-row atoms of 1 KB one after the
// other) and the canonical MN-major layout of V for O += P V (8-key atoms 1 KB apart along the keys, the two d
// halves BN * 128 bytes apart).
template <int BN> __device__ __forceinline__ uint32_t wg_tile_offset(int key, int chunk) {
    return static_cast<uint32_t>((chunk >> 3) * (BN * 128) + key * 128 + (((chunk & 7) ^ (key & 7)) << 4));
}

// 16-byte pieces of a K (or V) tile of BN keys that each of FA_WARPS * 32 threads copies
template <int D, int BN> constexpr int KV_PIECES = BN * (D / 8) / (FA_WARPS * 32);

// Piece i of this thread's share of a K and a V tile of BN keys, for FA_WARPS * 32 threads (threadIdx.x below that: a
// block's, or a loading warpgroup's): chunk `chunk` (8 values) of key `key` of the tile, idx = threadIdx.x +
// FA_WARPS * 32 i, key = idx / (D / 8), chunk = idx % (D / 8). kv_source gives where a piece of the tile from key k0
// comes from (an element offset into the cache, the same for K and V: each key's cache row is found once for both) and
// how many bytes to copy (16, or 0 past key `last`: zero-filled); kv_copy queues its copies into the K and the V tile,
// the K tile in wg_tile_offset's layout with WG >= 1, the V tile too with WG = 2 (else tile_offset's).
struct KvPiece {
    int key, chunk;
};
struct KvSource {
    long long at;
    int bytes;
};

template <int D>
__device__ __forceinline__ KvPiece kv_piece(int i) {
    const int idx = threadIdx.x + i * FA_WARPS * 32;
    return KvPiece{idx / (D / 8), idx % (D / 8)};
}

template <int D>
__device__ __forceinline__ KvSource kv_source(KvPiece pc, const int* table, int k0, int last, const BlockDiv& blocks,
                                              int num_kv_heads, int kv_head) {
    const int t = k0 + pc.key;
    long long at = 0;
    int bytes = 0;
    if (t <= last) {
        at = (blocks.slot(table, t) * num_kv_heads + kv_head) * D + pc.chunk * 8;
        bytes = 16;
    }
    return KvSource{at, bytes};
}

template <int D, int BN, int WG>
__device__ __forceinline__ void kv_copy(KvPiece pc, KvSource src, uint32_t k_tile, uint32_t v_tile, const uint16_t* k_cache,
                                        const uint16_t* v_cache) {
    const uint32_t to = tile_offset<D>(pc.key, pc.chunk);
    const uint32_t wg = WG > 0 ? wg_tile_offset<BN>(pc.key, pc.chunk) : to;
    cp_async16(k_tile + wg, k_cache + src.at, src.bytes);
    cp_async16(v_tile + (WG > 1 ? wg : to), v_cache + src.at, src.bytes);
}

// load_tile for the K and the V tile of BN keys at once, by the block's FA_WARPS * 32 threads: kv_source, then kv_copy,
// piece by piece.
template <int D, int BN, int WG = 0>
__device__ __forceinline__ void load_kv_tiles(uint32_t k_tile, uint32_t v_tile, const uint16_t* k_cache, const uint16_t* v_cache,
                                              const int* table, int k0, int last, const BlockDiv& blocks, int num_kv_heads,
                                              int kv_head) {
    static_assert(BN * (D / 8) % (FA_WARPS * 32) == 0, "the block's threads share the tile's chunks evenly");
#pragma unroll
    for (int i = 0; i < KV_PIECES<D, BN>; i++) {
        const KvPiece pc = kv_piece<D>(i);
        kv_copy<D, BN, WG>(pc, kv_source<D>(pc, table, k0, last, blocks, num_kv_heads, kv_head), k_tile, v_tile, k_cache, v_cache);
    }
}

// Q fragments of global rows row_a and row_a + 8 of one head, rounded to T once; a row that is not valid is zero
// (computed on, never stored).
template <typename T, int D>
__device__ __forceinline__ void load_q(uint32_t (&qf)[D / 16][4], const FlashAttentionParams& p, long long row_a, int head,
                                       bool va, bool vb, int t4) {
    if (p.rope_cos != nullptr) {
        const long long stride = p.q_stride;
        const T* qa = static_cast<const T*>(p.q) + row_a * stride + (long long)head * D;
        const float* ca = p.rope_cos + row_a * (D / 2);
        const float* sa = p.rope_sin + row_a * (D / 2);
        q_fragments_rotated<T, D>(qf, qa, qa + 8 * stride, ca, sa, ca + 8 * (D / 2), sa + 8 * (D / 2), va, vb, t4);
        return;
    }
    const long long stride = (long long)p.num_heads * D;
    const float* qa = static_cast<const float*>(p.q) + row_a * stride + (long long)head * D;
    q_fragments<T, D>(qf, qa, qa + 8 * stride, va, vb, t4);
}

// O / l of global rows row_a and row_a + 8 of one head, stored where valid; every valid row has seen at least
// its own key, so l > 0 there.
template <typename T, int D>
__device__ __forceinline__ void store_o(const float (&o)[D / 8][4], float l_a, float l_b, const FlashAttentionParams& p,
                                        long long row_a, int head, bool va, bool vb, int t4) {
    quad_sums(l_a, l_b);
    const long long stride = (long long)p.num_heads * D;
    const long long a = row_a * stride + (long long)head * D + 2 * t4;
    const bool out16 = p.out_dtype != DT_F32;
    if (va) {
        const float inv = 1.f / l_a;
#pragma unroll
        for (int i = 0; i < D / 8; i++) store_pair<T>(p.out, out16, a + i * 8, o[i][0] * inv, o[i][1] * inv);
    }
    if (vb) {
        const float inv = 1.f / l_b;
#pragma unroll
        for (int i = 0; i < D / 8; i++) store_pair<T>(p.out, out16, a + 8 * stride + i * 8, o[i][2] * inv, o[i][3] * inv);
    }
}

template <typename T, int D>
__device__ __forceinline__ void flash_attention(const FlashAttentionParams& p) {
    constexpr int KC = D / 16;      // 16-wide k steps of Q K^T
    constexpr int NB = FA_BN / 8;   // 8-key blocks of S per tile
    constexpr int DB = D / 8;       // 8-wide d blocks of O
    __shared__ __align__(128) uint16_t k_tile[FA_BN * D];
    __shared__ __align__(128) uint16_t v_tile[FA_BN * D];

    const int head = blockIdx.x, item = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t4 = lane & 3;

    const int seq = p.work[2 * item], first = p.work[2 * item + 1];
    const int q_start = p.query_starts[seq];
    const int q_len = p.query_starts[seq + 1] - q_start;
    const int rows = min(FA_BM, q_len - first);            // valid rows of this tile, >= 1
    const int pos0 = p.context_lens[seq] - q_len + first;  // position of tile row 0
    const int window = p.sliding_window;
    const int key_lo = window > 0 ? max(0, pos0 - window + 1) : 0;
    const int key_hi = pos0 + rows - 1;
    const int kv_head = head / (p.num_heads / p.num_kv_heads);
    const int* table = p.block_tables + (long long)seq * p.max_blocks_per_seq;
    const BlockDiv blocks(p.block_size);
    const uint16_t* kc = static_cast<const uint16_t*>(p.k_cache);
    const uint16_t* vc = static_cast<const uint16_t*>(p.v_cache);
    const uint32_t k_base = smem_addr(k_tile), v_base = smem_addr(v_tile);

    // this thread's two rows (tile rows r_a and r_a + 8) and what this warp needs
    const int r_a = warp * 16 + g, r_b = r_a + 8;
    const int pos_a = pos0 + r_a, pos_b = pos0 + r_b;
    const bool warp_live = warp * 16 < rows;
    const int warp_first_pos = pos0 + warp * 16;
    const int warp_last_pos = pos0 + min(warp * 16 + 15, rows - 1);

    // Q fragments, rounded to T once; rows past the tile's end are zero (never stored)
    uint32_t qf[KC][4];
    load_q<T, D>(qf, p, (long long)(q_start + first + r_a), head, r_a < rows, r_b < rows, t4);

    float o[DB][4];
#pragma unroll
    for (int i = 0; i < DB; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY;  // running max of the scaled scores (log2 units)
    float l_a = 0.f, l_b = 0.f;              // this thread's part of the row sums
    const float c = p.scale * 1.4426950408889634f;  // exp(x) = exp2(x * log2(e))

    // ldmatrix lane roles: lane supplies row (lane & 7) of 8x8 matrix (lane >> 3)
    const int mi = lane >> 3, mr = lane & 7;

    const int tiles = (key_hi - key_lo) / FA_BN + 1;
    load_tile<D>(k_base, kc, table, key_lo, key_hi, blocks, p.num_kv_heads, kv_head);
    cp_async_commit();
    for (int it = 0; it < tiles; it++) {
        const int k0 = key_lo + it * FA_BN;
        __syncthreads();  // every warp is done with v_tile (P V of the previous tile)
        load_tile<D>(v_base, vc, table, k0, key_hi, blocks, p.num_kv_heads, kv_head);
        cp_async_commit();
        cp_async_wait<1>();  // this tile's K has landed (this thread's part) ...
        __syncthreads();     // ... and everybody's

        // does this warp have a key of this tile inside some row's range?
        const bool live = warp_live && k0 <= warp_last_pos && (window <= 0 || k0 + FA_BN - 1 > warp_first_pos - window);
        uint32_t pf[FA_BN / 16][4];  // P as A fragments, 16 keys each
        if (live) {
            float s[NB][4];
            qk_tile<T, D, NB>(s, qf, k_base, mi, mr);

            // scale; mask keys after the row's position or before its window (only where this tile can hold some)
            const bool mask = k0 + FA_BN - 1 > warp_first_pos || (window > 0 && k0 <= warp_last_pos - window);
            softmax_tile<T, NB, DB>(s, pf, o, m_a, m_b, l_a, l_b, k0, pos_a, pos_b, window, mask, c, t4);
        }

        cp_async_wait<0>();  // this tile's V has landed
        __syncthreads();     // and every warp is done reading k_tile
        if (it + 1 < tiles) {
            load_tile<D>(k_base, kc, table, k0 + FA_BN, key_hi, blocks, p.num_kv_heads, kv_head);
            cp_async_commit();
        }

        if (live) {
            pv_tile<T, D, FA_BN / 16>(&o, &pf, v_base, mi, mr);
        }
    }

    store_o<T, D>(o, l_a, l_b, p, (long long)(q_start + first + r_a), head, r_a < rows, r_b < rows, t4);
}

// The grouped-query variant (CudaBackend.FLASH_GQA_PROPERTY): the block's four warps take four query heads
// that share one KV head, over the same GQ_BM = 16 query rows, so each K/V tile is copied from the cache
// once for four heads instead of once per head. Tiles are BN keys (32, or 64 under
// CudaBackend.FLASH_GQA_KEYS_PROPERTY), double-buffered: tile j + 1 is in flight while the warps work on tile j,
// with one barrier per tile. Every warp has the same rows, so all of them walk the same tiles and masks. The
// fragment layout and the arithmetic are those of flash_attention: Q rounded to the cache type once, S and the
// online softmax in F32, P rounded to the cache type for P V. Grid (num_kv_heads * group / 4, work items of
// GQ_BM rows); group a multiple of 4.
//
// With BN = 64 a warp has twice the independent mma chains per tile and half the barriers, row-max reductions and
// O rescales per key, for 246 instead of 168 registers at head_dim 128 on sm_90a (two blocks an H100 SM instead of
// three).
//
// With MT > 0 (CudaBackend.FLASH_GQA_WARP_ROWS_PROPERTY) each warp takes MT tiles of 16 query rows (items of
// MT * 16 rows) and keeps its Q rows in shared memory, reading them back a k step at a time instead of holding them
// in registers; each K and V fragment read from shared memory then feeds MT mma instead of one, and a warp has MT
// times the independent mma chains per tile and per barrier. MT = 2 at head_dim 128: two blocks an H100 SM (launch
// bounds), 32 KB of Q rows a block beside the 32 KB of K/V stages.
#define GQ_BM 16

// With WG >= 1, S = Q K^T runs on wgmma (sm_90a; CudaBackend.FLASH_GQA_WGMMA_PROPERTY): the block's four
// warps are one warpgroup, and their 4 heads x 16 rows are the 64 rows of wgmma.m64n32k16. A comes from the
// registers (each warp's Q fragments, the mma.m16n8k16 A layout, which is wgmma's for its 16 rows), B is the K tile
// in shared memory in wg_tile_offset's layout, read by the tensor cores through a matrix descriptor; the
// accumulators come back in the m16n8 layout of qk_tile, so the softmax stays as it is. Per tile the warpgroup
// issues D / 16 wgmma instead of each warp's D / 16 * BN / 8 mma and D / 16 * BN / 16 ldmatrix. With WG = 2,
// O += P V runs on wgmma.m64n{D}k16 as well (CudaBackend.FLASH_GQA_WGMMA_PV_PROPERTY): A = P from the registers
// (the softmax writes it in the A layout), B = the V tile in the same swizzled layout, read MN-major; O's
// accumulators keep the m16n8 layout the softmax rescales and store_o writes. Otherwise P V stays on mma.sync.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LATHE_WGMMA 1
#endif

#ifdef LATHE_WGMMA
// Matrix descriptor of an operand with 128-byte swizzle at shared address `addr`, atoms of 8 rows x 128 bytes
// (1 KB, 1 KB aligned; base offset 0). K-major (K of S = Q K^T): atoms 1 KB apart along the keys (stride byte
// offset), the leading byte offset unused (16); a start address moved by k * 32 bytes within an atom selects k step
// k, as the swizzle is applied to the address. MN-major (V of O += P V): atoms 1 KB apart along the keys (stride
// byte offset), `leading` bytes apart along head_dim (the tile's two d halves).
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t leading = 16) {
    return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(leading >> 4) << 16)
           | (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// D (64 x N, f32, the m16n8 layout per warp) = A B, or += with `accumulate`. run: A from the registers (each warp's
// 16 rows in the mma.m16n8k16 A layout), B (16 x N) through a descriptor, K-major (TRANS_B 0: K of S = Q K^T) or
// MN-major (TRANS_B 1: V of O += P V). run_ss: A (64 x 16, K-major) through a descriptor too, B K-major.
template <typename T, int N> struct Wgmma;
// the accumulator operands of a 64 x 32, 64 x 64 and 64 x 128 D (16, 32 and 64 floats a thread), each list the one
// before and more, and their places in the instruction
#define LATHE_WGMMA_D32 "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), \
    "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
#define LATHE_WGMMA_D64 LATHE_WGMMA_D32, \
    "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
    "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
#define LATHE_WGMMA_D128 LATHE_WGMMA_D64, \
    "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), \
    "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), \
    "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), \
    "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
#define LATHE_WGMMA_R16 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
#define LATHE_WGMMA_R32 LATHE_WGMMA_R16 ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
#define LATHE_WGMMA_R64 LATHE_WGMMA_R32 ",%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47," \
    "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
// Wgmma<T, N>: D the accumulator operands, R their places; the other operands follow them, so their places are given
// as strings: run's A registers, descriptor, accumulate flag and TRANS_B; run_ss's two descriptors and flag.
#define LATHE_WGMMA_N(T, TYPE, N, D, R, A_REGS, DESC, ACC, TRANS, SS_A, SS_B, SS_ACC) \
    template <> struct Wgmma<T, N> { \
        template <int TRANS_B> \
        static __device__ __forceinline__ void run(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t desc, int accumulate) { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " ACC ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " \
                         "{" R "}, " A_REGS ", " DESC ", p, 1, 1, " TRANS ";\n}\n" \
                         : D \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TRANS_B) : "memory"); \
        } \
        static __device__ __forceinline__ void run_ss(float (&d)[N / 8][4], uint64_t desc_a, uint64_t desc_b, int accumulate) { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SS_ACC ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " \
                         "{" R "}, " SS_A ", " SS_B ", p, 1, 1, 0, 0;\n}\n" \
                         : D \
                         : "l"(desc_a), "l"(desc_b), "r"(accumulate) : "memory"); \
        } \
    };
#define LATHE_WGMMA_N32(T, TYPE) \
    LATHE_WGMMA_N(T, TYPE, 32, LATHE_WGMMA_D32, LATHE_WGMMA_R16, "{%16,%17,%18,%19}", "%20", "%21", "%22", "%16", "%17", "%18")
#define LATHE_WGMMA_N64(T, TYPE) \
    LATHE_WGMMA_N(T, TYPE, 64, LATHE_WGMMA_D64, LATHE_WGMMA_R32, "{%32,%33,%34,%35}", "%36", "%37", "%38", "%32", "%33", "%34")
#define LATHE_WGMMA_N128(T, TYPE) \
    LATHE_WGMMA_N(T, TYPE, 128, LATHE_WGMMA_D128, LATHE_WGMMA_R64, "{%64,%65,%66,%67}", "%68", "%69", "%70", "%64", "%65", "%66")
LATHE_WGMMA_N32(__nv_bfloat16, "bf16")
LATHE_WGMMA_N64(__nv_bfloat16, "bf16")
LATHE_WGMMA_N128(__nv_bfloat16, "bf16")
LATHE_WGMMA_N32(__half, "f16")
LATHE_WGMMA_N64(__half, "f16")
LATHE_WGMMA_N128(__half, "f16")
#undef LATHE_WGMMA_N32
#undef LATHE_WGMMA_N64
#undef LATHE_WGMMA_N128
#undef LATHE_WGMMA_N
#undef LATHE_WGMMA_D32
#undef LATHE_WGMMA_D64
#undef LATHE_WGMMA_D128
#undef LATHE_WGMMA_R16
#undef LATHE_WGMMA_R32
#undef LATHE_WGMMA_R64
#endif

// S = Q K^T for one tile of BN keys: D / 16 wgmma over the K tile at k_tile (wg_tile_offset layout), the first
// overwriting S, then waited for. sm_90a only (declared everywhere, so that flash_attention_gqa parses).
template <typename T, int D, int BN>
__device__ __forceinline__ void qk_tile_wgmma(float (&s)[BN / 8][4], const uint32_t (&qf)[D / 16][4], uint32_t k_tile) {
#ifdef LATHE_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
        // k step k: d values 16k..16k+15, 32 bytes into the 128-byte rows of half k / 4
        Wgmma<T, BN>::template run<0>(s, qf[k], wg_desc(k_tile + (k >> 2) * (BN * 128) + (k & 3) * 32), k > 0);
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#else
    __trap();
#endif
}

// Waits until at most N of this warp's committed wgmma groups are still running (they complete in order).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#ifdef LATHE_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// Keeps the compiler's reads and writes of r on their side of this point: a wgmma in flight reads or writes r
// behind the compiler's back until it is waited for.
#ifdef LATHE_WGMMA
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fence_operand(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// Pins the softmax's results (P of M row tiles, KB 16-key fragments each, the rescale factors and the row sums) before
// a wgmma wait that follows. That arithmetic is not asm, and within one basic block the assembler may move the wait
// above it (it did, in one of the two tile bodies), so that the softmax no longer overlaps the P V it waits for. A
// branch on the row sums (never taken: a sum of exponentials is not negative, and NaN compares false) ends the block
// after the sums are known; a warp-wide vote keeps it uniform (a divergent one serialises the wgmma).
template <int M, int KB>
__device__ __forceinline__ void settle_softmax(uint32_t (&pf)[M][KB][4], float (&corr_a)[M], float (&corr_b)[M],
                                               const float (&l_a)[M]) {
#pragma unroll
    for (int m = 0; m < M; m++) {
#pragma unroll
        for (int k = 0; k < KB; k++) {
#pragma unroll
            for (int e = 0; e < 4; e++) fence_operand(pf[m][k][e]);
        }
        fence_operand(corr_a[m]);
        fence_operand(corr_b[m]);
    }
    bool negative = false;
#pragma unroll
    for (int m = 0; m < M; m++) negative |= l_a[m] < 0.f;
    if (__any_sync(0xffffffffu, negative)) __trap();
}
#endif

// S = Q K^T for M tiles of 64 query rows (4 heads x 16 rows each) with Q in shared memory at q_tiles (tile m at
// q_tiles + m * 64 * D * 2, wg_tile_offset's layout over 64 rows): M * D / 16 wgmma with A through a descriptor, each
// K descriptor serving the M tiles, committed as one group and not waited for. sm_90a only.
template <typename T, int D, int BN, int M>
__device__ __forceinline__ void qk_tiles_wgmma_ss_issue(float (&s)[M][BN / 8][4], uint32_t q_tiles, uint32_t k_tile) {
#ifdef LATHE_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
        const uint64_t kd = wg_desc(k_tile + (k >> 2) * (BN * 128) + (k & 3) * 32);
#pragma unroll
        for (int m = 0; m < M; m++) {
            const uint64_t qd = wg_desc(q_tiles + m * (64 * D * 2) + (k >> 2) * (64 * 128) + (k & 3) * 32);
            Wgmma<T, BN>::run_ss(s[m], qd, kd, k > 0);
        }
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
    __trap();
#endif
}

// qk_tiles_wgmma_ss_issue, then waited for.
template <typename T, int D, int BN, int M>
__device__ __forceinline__ void qk_tiles_wgmma_ss(float (&s)[M][BN / 8][4], uint32_t q_tiles, uint32_t k_tile) {
    qk_tiles_wgmma_ss_issue<T, D, BN, M>(s, q_tiles, k_tile);
    wgmma_wait<0>();
}

// Stores this thread's A fragments of rows g and g + 8 of a 16-row slice (rows `row0` + ... of a 64-row Q tile at
// q_tile, wg_tile_offset's layout) for qk_tiles_wgmma_ss.
template <int D>
__device__ __forceinline__ void store_q_wg(uint32_t q_tile, const uint32_t (&qf)[D / 16][4], int row0, int g, int t4) {
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            // a0: row g, chunk 2k; a1: row g + 8, chunk 2k; a2: row g, chunk 2k + 1; a3: row g + 8, chunk 2k + 1
            const uint32_t at = q_tile + wg_tile_offset<64>(row0 + g + (r & 1) * 8, 2 * k + (r >> 1)) + 4 * t4;
            asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(at), "r"(qf[k][r]) : "memory");
        }
    }
}

// Q rows `row` and row + 8 of one head (load_q) into this warp's 16-row slice of a 64-row Q tile at q_tile (store_q_wg),
// where the wgmma kernels' tensor cores read them.
template <typename T, int D>
__device__ __forceinline__ void load_q_wg(uint32_t q_tile, const FlashAttentionParams& p, long long row, int head, bool va,
                                          bool vb, int warp, int g, int t4) {
    uint32_t qt[D / 16][4];
    load_q<T, D>(qt, p, row, head, va, vb, t4);
    store_q_wg<D>(q_tile, qt, warp * GQ_BM, g, t4);
}

// O += P V for one tile of BN keys and M tiles of 64 query rows: BN / 16 wgmma a row tile (16 keys each) over the V
// tile at v_tile (wg_tile_offset layout, read MN-major: 8-key atoms 1 KB apart, the d halves BN * 128 bytes apart),
// committed as one group and not waited for. sm_90a only.
template <typename T, int D, int BN, int M>
__device__ __forceinline__ void pv_tile_wgmma_issue(float (&o)[M][D / 8][4], const uint32_t (&pf)[M][BN / 16][4], uint32_t v_tile) {
#ifdef LATHE_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");  // o was rescaled, pf written, since the last wgmma
#pragma unroll
    for (int k = 0; k < BN / 16; k++) {
        const uint64_t vd = wg_desc(v_tile + k * (16 * 128), BN * 128);
#pragma unroll
        for (int m = 0; m < M; m++) Wgmma<T, D>::template run<1>(o[m], pf[m][k], vd, 1);
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
    __trap();
#endif
}

// pv_tile_wgmma_issue, then waited for.
template <typename T, int D, int BN, int M>
__device__ __forceinline__ void pv_tile_wgmma(float (&o)[M][D / 8][4], const uint32_t (&pf)[M][BN / 16][4], uint32_t v_tile) {
    pv_tile_wgmma_issue<T, D, BN, M>(o, pf, v_tile);
    wgmma_wait<0>();
}


// What a block of the grouped-query kernels works on (grid (num_kv_heads * group / 4, work items)): warp `warp`'s query
// head and its KV head, and the block's work item of up to item_rows query rows of one sequence: where its rows start
// in q, from which row of the sequence, how many are valid (>= 1), the position of its row 0, the keys its rows need
// (from the window start of row 0, or 0, to the position of its last row) and the sequence's block table.
struct GqaItem {
    int kv_head, head, q_start, first, rows, pos0, key_lo, key_hi;
    const int* table;
};

__device__ __forceinline__ GqaItem gqa_item(const FlashAttentionParams& p, int warp, int item_rows) {
    GqaItem it;
    const int group = p.num_heads / p.num_kv_heads;
    const int blocks_per_kv = group / FA_WARPS;  // >= 1: the host launches these kernels only for groups of 4k heads
    it.kv_head = blockIdx.x / blocks_per_kv;
    it.head = it.kv_head * group + (blockIdx.x % blocks_per_kv) * FA_WARPS + warp;
    const int item = blockIdx.y;
    const int seq = p.work[2 * item];
    it.first = p.work[2 * item + 1];
    it.q_start = p.query_starts[seq];
    const int q_len = p.query_starts[seq + 1] - it.q_start;
    it.rows = min(item_rows, q_len - it.first);
    it.pos0 = p.context_lens[seq] - q_len + it.first;
    it.key_lo = p.sliding_window > 0 ? max(0, it.pos0 - p.sliding_window + 1) : 0;
    it.key_hi = it.pos0 + it.rows - 1;
    it.table = p.block_tables + (long long)seq * p.max_blocks_per_seq;
    return it;
}

// O of M 16-row tiles zeroed, their running maxima -inf and row sums 0: the online softmax before its first tile.
template <int M, int DB>
__device__ __forceinline__ void clear_state(float (&o)[M][DB][4], float (&m_a)[M], float (&m_b)[M], float (&l_a)[M],
                                            float (&l_b)[M]) {
#pragma unroll
    for (int m = 0; m < M; m++) {
#pragma unroll
        for (int i = 0; i < DB; i++) o[m][i][0] = o[m][i][1] = o[m][i][2] = o[m][i][3] = 0.f;
        m_a[m] = m_b[m] = -INFINITY;
        l_a[m] = l_b[m] = 0.f;
    }
}

template <typename T, int D, int BN, int MT = 0, int WG = 0>
__device__ __forceinline__ void flash_attention_gqa(const FlashAttentionParams& p) {
    static_assert(WG == 0 || MT == 0 || (WG == 2 && MT == 2), "32 rows a warp on wgmma runs both products there");
    constexpr bool QS = MT > 0;     // Q rows in shared memory
    constexpr int M = QS ? MT : 1;  // 16-row tiles of a warp
    constexpr int KC = D / 16;      // 16-wide k steps of Q K^T
    constexpr int NB = BN / 8;      // 8-key blocks of S per tile
    constexpr int DB = D / 8;       // 8-wide d blocks of O
    // dynamic shared memory (its size set by Kernels.gqaShared): the K tiles of the two stages, their V tiles, then
    // (QS) the warps' Q rows, M * 16 a warp; with WG from the first 1 KB boundary (1 KB more is given)
    extern __shared__ __align__(128) uint16_t gqa_smem[];
    constexpr uint32_t TILE_BYTES = BN * D * 2;
    // K tile of stage s at smem + s * TILE_BYTES, its V tile two tiles on
    const uint32_t smem = WG > 0 ? (smem_addr(gqa_smem) + 1023u) & ~1023u : smem_addr(gqa_smem);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const GqaItem it_ = gqa_item(p, warp, GQ_BM * M);
    const int kv_head = it_.kv_head, head = it_.head;
    const int first = it_.first, q_start = it_.q_start, rows = it_.rows, pos0 = it_.pos0;
    const int window = p.sliding_window;
    const int key_lo = it_.key_lo, key_hi = it_.key_hi;
    const int* table = it_.table;
    const BlockDiv blocks(p.block_size);
    const uint16_t* kc = static_cast<const uint16_t*>(p.k_cache);
    const uint16_t* vc = static_cast<const uint16_t*>(p.v_cache);

    // this thread's rows: g and g + 8 of each 16-row tile; rows past the item's end compute on zero queries and are
    // never stored
    uint32_t qf[QS ? 1 : KC][4];  // the Q fragments held in registers (without QS)
    // this warp's Q rows (with QS); with WG the M tiles of 64 rows (4 heads x 16) of the whole block
    const uint32_t q_rows = smem + 4 * TILE_BYTES + (WG > 0 ? 0 : warp * (M * GQ_BM * D * 2));
    if constexpr (QS) {
#pragma unroll
        for (int m = 0; m < M; m++) {
            uint32_t qt[KC][4];
            const int r = m * GQ_BM + g;
            load_q<T, D>(qt, p, (long long)(q_start + first + r), head, r < rows, r + 8 < rows, t4);
            if constexpr (WG > 0) store_q_wg<D>(q_rows + m * (64 * D * 2), qt, warp * GQ_BM, g, t4);
            else store_q_rows<D>(q_rows + m * (GQ_BM * D * 2), qt, g, t4);
        }
        // only this warp reads its rows (with WG the tensor cores read all four warps' rows, after the fence and the
        // __syncthreads at the top of the first tile)
        __syncwarp();
    } else {
        load_q<T, D>(qf, p, (long long)(q_start + first + g), head, g < rows, g + 8 < rows, t4);
    }

    float o[M][DB][4];
    float m_a[M], m_b[M];  // running max of the scaled scores (log2 units) of rows g and g + 8 of each tile
    float l_a[M], l_b[M];  // this thread's part of their row sums
    clear_state<M, DB>(o, m_a, m_b, l_a, l_b);
    const float c = p.scale * 1.4426950408889634f;
    const int mi = lane >> 3, mr = lane & 7;

    const int tiles = (key_hi - key_lo) / BN + 1;
    // tile 0 in flight before the loop; iteration it then starts tile it + 1 into the stage tile it - 1 used
    load_kv_tiles<D, BN, WG>(smem, smem + 2 * TILE_BYTES, kc, vc, table, key_lo, key_hi, blocks, p.num_kv_heads, kv_head);
    cp_async_commit();
    for (int it = 0; it < tiles; it++) {
        const int k0 = key_lo + it * BN;
        const int stage = it & 1;
        cp_async_wait<0>();  // this thread's part of tile it has landed ...
        // (WG: ... and is visible to the tensor cores' reads of the K tile, which go through the async proxy ...)
        if constexpr (WG > 0) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();     // ... everybody's, and every warp is done with tile it - 1's stage
        if (it + 1 < tiles) {
            const int next = stage ^ 1;
            load_kv_tiles<D, BN, WG>(smem + next * TILE_BYTES, smem + (2 + next) * TILE_BYTES, kc, vc, table,
                                        k0 + BN, key_hi, blocks, p.num_kv_heads, kv_head);
            cp_async_commit();
        }
        const uint32_t k_base = smem + stage * TILE_BYTES, v_base = smem + (2 + stage) * TILE_BYTES;

        float s[M][NB][4];
        if constexpr (WG > 0 && QS) qk_tiles_wgmma_ss<T, D, BN, M>(s, q_rows, k_base);
        else if constexpr (WG > 0) qk_tile_wgmma<T, D, BN>(s[0], qf, k_base);
        else if constexpr (QS) qk_tile_q_shared<T, D, NB, M>(s, q_rows, k_base, mi, mr);
        else qk_tile<T, D, NB>(s[0], qf, k_base, mi, mr);

        // scale; mask keys after the row's position (and zero-filled keys past key_hi) or before its window
        const bool mask = k0 + BN - 1 > pos0 || window > 0;
        uint32_t pf[M][BN / 16][4];
#pragma unroll
        for (int m = 0; m < M; m++) {
            const int pos_a = pos0 + m * GQ_BM + g;
            softmax_tile<T, NB, DB>(s[m], pf[m], o[m], m_a[m], m_b[m], l_a[m], l_b[m], k0, pos_a, pos_a + 8, window, mask,
                                    c, t4);
        }
        if constexpr (WG > 1) pv_tile_wgmma<T, D, BN, M>(o, pf, v_base);
        else pv_tile<T, D, BN / 16, M>(o, pf, v_base, mi, mr);
    }

#pragma unroll
    for (int m = 0; m < M; m++) {
        const int r = m * GQ_BM + g;
        store_o<T, D>(o[m], l_a[m], l_b[m], p, (long long)(q_start + first + r), head, r < rows, r + 8 < rows, t4);
    }
}

#ifdef LATHE_WGMMA
// The second half of a tile of the overlapped schedule (flash_attention_gqa_overlap, flash_attention_gqa_ws), once S(it)
// has been waited for (P V of tile it - 1 may still run): the online softmax of M 16-row tiles into `next` (this thread's
// rows row0 + 16 m and + 8 of the work item, whose row 0 sits at position pos0), then, from the second tile on, the wait
// for P V(it - 1), released() (the stage that P V read is free) and O's rescale for tile it (the rescale must not touch O
// while a wgmma accumulates into it). At it = 0 O is still zero: nothing to rescale.
template <typename T, int D, int BN, int M, typename Released>
__device__ __forceinline__ void overlapped_softmax(int it, float (&s)[M][BN / 8][4], uint32_t (&prev)[M][BN / 16][4],
                                                   uint32_t (&next)[M][BN / 16][4], float (&o)[M][D / 8][4], float (&m_a)[M],
                                                   float (&m_b)[M], float (&l_a)[M], float (&l_b)[M], int k0, int pos0, int row0,
                                                   int window, float c, int t4, Released released) {
#pragma unroll
    for (int m = 0; m < M; m++) {
#pragma unroll
        for (int n = 0; n < BN / 8; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) fence_operand(s[m][n][e]);
        }
    }
    const bool mask = k0 + BN - 1 > pos0 || window > 0;
    float corr_a[M], corr_b[M];
#pragma unroll
    for (int m = 0; m < M; m++) {
        const int pos_a = pos0 + row0 + m * GQ_BM;
        softmax_scores<T, BN / 8>(s[m], next[m], m_a[m], m_b[m], l_a[m], l_b[m], k0, pos_a, pos_a + 8, window, mask, c, t4,
                                  corr_a[m], corr_b[m]);
    }
    if (it > 0) {
        // the softmax is done before the wait, not moved behind it by the compiler (that would leave P V unoverlapped)
        settle_softmax<M, BN / 16>(next, corr_a, corr_b, l_a);
        wgmma_wait<0>();  // P V of tile it - 1: O holds tiles up to it - 1, prev is free again
        released();
#pragma unroll
        for (int m = 0; m < M; m++) {
#pragma unroll
            for (int k = 0; k < BN / 16; k++) {
#pragma unroll
                for (int e = 0; e < 4; e++) fence_operand(prev[m][k][e]);
            }
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
#pragma unroll
                for (int e = 0; e < 4; e++) fence_operand(o[m][i][e]);
            }
            rescale_o<D / 8>(o[m], corr_a[m], corr_b[m]);
        }
    }
}

// P V of the last of `tiles` tiles of the overlapped schedule, waited for: its P is in pa after an odd number of tiles
// (the tile bodies alternate pa and pb), else in pb; its V tile at v_last.
template <typename T, int D, int BN, int M>
__device__ __forceinline__ void overlapped_last_pv(int tiles, float (&o)[M][D / 8][4], const uint32_t (&pa)[M][BN / 16][4],
                                                   const uint32_t (&pb)[M][BN / 16][4], uint32_t v_last) {
    if (tiles & 1) pv_tile_wgmma<T, D, BN, M>(o, pa, v_last);
    else pv_tile_wgmma<T, D, BN, M>(o, pb, v_last);
#pragma unroll
    for (int m = 0; m < M; m++) {
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
#pragma unroll
            for (int e = 0; e < 4; e++) fence_operand(o[m][i][e]);
        }
    }
}
#endif

// The wgmma kernel at 32 rows a warp (flash_attention_gqa with WG = 2, MT = 2, BN = 32) with the softmax of one tile
// overlapping the tensor cores' P V of the one before (CudaBackend.FLASH_GQA_OVERLAP_PROPERTY). Iteration `it` issues
// S(it) = Q K(it)^T and then O += P(it-1) V(it-1), waits for S(it) only, computes P(it) while P V runs, then waits
// for P V and rescales O for tile it (the rescale must not touch O while a wgmma accumulates into it). P alternates
// between two register sets, as P(it-1) is read by the tensor cores while P(it) is written. Three K/V stages: tile
// it + 1 loads while tile it (K) and tile it - 1 (V) are read; a stage is loaded again only after every warp has
// waited for the P V that read it and passed the next iteration's barrier. Grid and shared memory as
// flash_attention_gqa's at 32 rows a warp with three stages.
template <typename T, int D>
__device__ __forceinline__ void flash_attention_gqa_overlap(const FlashAttentionParams& p) {
#ifdef LATHE_WGMMA
    constexpr int BN = 32, M = 2, STAGES = 3;
    constexpr int NB = BN / 8;  // 8-key blocks of S per tile
    constexpr int DB = D / 8;   // 8-wide d blocks of O
    extern __shared__ __align__(128) uint16_t gqa_smem[];
    constexpr uint32_t TILE_BYTES = BN * D * 2;
    // K tile of stage s at smem + s * TILE_BYTES, its V tile STAGES tiles on, then the block's two 64-row Q tiles
    const uint32_t smem = (smem_addr(gqa_smem) + 1023u) & ~1023u;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const GqaItem it_ = gqa_item(p, warp, GQ_BM * M);
    const int kv_head = it_.kv_head, head = it_.head;
    const int first = it_.first, q_start = it_.q_start, rows = it_.rows, pos0 = it_.pos0;
    const int window = p.sliding_window;
    const int key_lo = it_.key_lo, key_hi = it_.key_hi;
    const int* table = it_.table;
    const BlockDiv blocks(p.block_size);
    const uint16_t* kc = static_cast<const uint16_t*>(p.k_cache);
    const uint16_t* vc = static_cast<const uint16_t*>(p.v_cache);

    const uint32_t q_rows = smem + 2 * STAGES * TILE_BYTES;
#pragma unroll
    for (int m = 0; m < M; m++) {
        const int r = m * GQ_BM + g;
        load_q_wg<T, D>(q_rows + m * (64 * D * 2), p, (long long)(q_start + first + r), head, r < rows, r + 8 < rows, warp, g, t4);
    }
    // the tensor cores read all four warps' rows after the fence and the barrier at the top of the first tile

    float o[M][DB][4];
    float m_a[M], m_b[M];  // running max of the scaled scores (log2 units) of rows g and g + 8 of each tile
    float l_a[M], l_b[M];  // this thread's part of their row sums
    clear_state<M, DB>(o, m_a, m_b, l_a, l_b);
    const float c = p.scale * 1.4426950408889634f;
    const int tiles = (key_hi - key_lo) / BN + 1;

    load_kv_tiles<D, BN, 2>(smem, smem + STAGES * TILE_BYTES, kc, vc, table, key_lo, key_hi, blocks, p.num_kv_heads, kv_head);
    cp_async_commit();

    // tile it: P(it - 1) in `prev` (unused at it = 0), P(it) into `next`
    auto tile = [&](int it, uint32_t (&prev)[M][BN / 16][4], uint32_t (&next)[M][BN / 16][4]) {
        const int k0 = key_lo + it * BN;
        cp_async_wait<0>();  // this thread's part of tile it has landed, visible to the async proxy ...
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();     // ... everybody's; every warp is done with tile it - 2's stage (its P V was waited for)
        // tile it + 1 into the third stage while the tensor cores work: its block-table loads wait behind the products
        // instead of in front of them
        auto load_next = [&] {
            if (it + 1 < tiles) {
                const int at = (it + 1) % STAGES;
                load_kv_tiles<D, BN, 2>(smem + at * TILE_BYTES, smem + (STAGES + at) * TILE_BYTES, kc, vc, table, k0 + BN,
                                        key_hi, blocks, p.num_kv_heads, kv_head);
                cp_async_commit();
            }
        };
        float s[M][NB][4];
        qk_tiles_wgmma_ss_issue<T, D, BN, M>(s, q_rows, smem + (it % STAGES) * TILE_BYTES);
        if (it > 0) {
            pv_tile_wgmma_issue<T, D, BN, M>(o, prev, smem + (STAGES + (it - 1) % STAGES) * TILE_BYTES);
            load_next();
            wgmma_wait<1>();  // S(it); P V of tile it - 1 may still run
        } else {
            load_next();
            wgmma_wait<0>();
        }
        overlapped_softmax<T, D, BN, M>(it, s, prev, next, o, m_a, m_b, l_a, l_b, k0, pos0, g, window, c, t4, [] {});
    };

    uint32_t pa[M][BN / 16][4], pb[M][BN / 16][4];
    for (int it = 0; it < tiles; it += 2) {
        tile(it, pb, pa);
        if (it + 1 < tiles) tile(it + 1, pa, pb);
    }
    overlapped_last_pv<T, D, BN, M>(tiles, o, pa, pb, smem + (STAGES + (tiles - 1) % STAGES) * TILE_BYTES);

#pragma unroll
    for (int m = 0; m < M; m++) {
        const int r = m * GQ_BM + g;
        store_o<T, D>(o[m], l_a[m], l_b[m], p, (long long)(q_start + first + r), head, r < rows, r + 8 < rows, t4);
    }
#else
    __trap();
#endif
}

#ifdef LATHE_WGMMA
// mbarriers in shared memory (sm_90): `count` arrivals complete a phase; a wait names the parity of the phase it
// waits for (the barrier starts in phase 0).
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    }
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// One arrival on `bar` once every cp.async this thread issued before has landed (counted among the expected ones).
__device__ __forceinline__ void cp_async_arrive(uint32_t bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Barrier `id` (1..15; 0 is __syncthreads') over `threads` threads of the block.
__device__ __forceinline__ void named_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
#endif

// The warp-specialised kernel (CudaBackend.FLASH_GQA_WARP_SPECIALIZED_PROPERTY): three warpgroups a block over the work
// items of flash_attention_gqa_overlap (4 query heads of one KV head x 32 rows). Warpgroup 0 only loads: it copies the
// K and V tiles of WS_BN keys into WS_STAGES stages with cp.async and signals each stage's `full` mbarrier when its
// copies have landed; it reloads a stage once the two consumers have arrived on its `empty` mbarrier. Warpgroups 1 and
// 2 only compute, each on its own 64 rows (4 heads x 16 rows: warpgroup 1 + c takes rows 16c..16c+15 of the item), with
// the overlapped schedule of flash_attention_gqa_overlap at one 64-row tile: S(it) and P(it-1) V(it-1) issued
// together, the softmax of tile it while P V runs, O rescaled after. So the computing warps issue no copies and no
// block-wide barriers, and each K/V tile feeds 128 query rows over twice the keys of the overlapped kernel's tiles.
// One block an SM (shared memory); grid as flash_attention_gqa_overlap's, WS_THREADS threads.
#define WS_BN 64
#define WS_STAGES 4
#define WS_THREADS 384
template <typename T, int D>
__device__ __forceinline__ void flash_attention_gqa_ws(const FlashAttentionParams& p) {
#ifdef LATHE_WGMMA
    constexpr int BN = WS_BN, STAGES = WS_STAGES;
    constexpr int NB = BN / 8;  // 8-key blocks of S per tile
    constexpr int DB = D / 8;   // 8-wide d blocks of O
    constexpr uint32_t TILE_BYTES = BN * D * 2;
    extern __shared__ __align__(128) uint16_t gqa_smem[];
    __shared__ __align__(8) uint64_t bars[2 * STAGES];  // full[STAGES], then empty[STAGES]
    // K tile of stage s at smem + s * TILE_BYTES, its V tile STAGES tiles on, then the two consumers' 64-row Q tiles
    const uint32_t smem = (smem_addr(gqa_smem) + 1023u) & ~1023u;
    const uint32_t full = smem_addr(bars), empty = full + STAGES * 8;

    const int wg = threadIdx.x >> 7;
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    const GqaItem it_ = gqa_item(p, warp, 2 * GQ_BM);
    const int key_lo = it_.key_lo, key_hi = it_.key_hi;
    const int tiles = (key_hi - key_lo) / BN + 1;

    if (threadIdx.x == 0) {
#pragma unroll
        for (int s = 0; s < STAGES; s++) {
            mbar_init(full + 8 * s, 128);  // every loading thread's copies
            mbar_init(empty + 8 * s, 8);   // every computing warp, after the P V that read the stage
        }
    }
    __syncthreads();

    if (wg == 0) {
        // the loaders need few registers: give the computing warpgroups theirs (128 x 56 + 256 x 224 <= 384 x 168)
        asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\n" ::: "memory");
        const BlockDiv blocks(p.block_size);
        const uint16_t* kc = static_cast<const uint16_t*>(p.k_cache);
        const uint16_t* vc = static_cast<const uint16_t*>(p.v_cache);
        for (int t = 0; t < tiles; t++) {
            const int s = t % STAGES;
            // the sources first: the block table's loads are in flight while the stage is waited for
            KvSource src[KV_PIECES<D, BN>];
#pragma unroll
            for (int i = 0; i < KV_PIECES<D, BN>; i++) {
                src[i] = kv_source<D>(kv_piece<D>(i), it_.table, key_lo + t * BN, key_hi, blocks, p.num_kv_heads, it_.kv_head);
            }
            if (t >= STAGES) mbar_wait(empty + 8 * s, (t / STAGES - 1) & 1);  // tile t - STAGES is done with
#pragma unroll
            for (int i = 0; i < KV_PIECES<D, BN>; i++) {
                kv_copy<D, BN, 2>(kv_piece<D>(i), src[i], smem + s * TILE_BYTES, smem + (STAGES + s) * TILE_BYTES, kc, vc);
            }
            cp_async_arrive(full + 8 * s);
        }
        // stay until the last stages are released: their copies have landed and nothing is left in flight
        for (int t = max(0, tiles - STAGES); t < tiles; t++) mbar_wait(empty + 8 * (t % STAGES), (t / STAGES) & 1);
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n" ::: "memory");
    const int c = wg - 1;  // this warpgroup's rows: 16c..16c+15 of each of the 4 heads
    const int g = lane >> 2, t4 = lane & 3;
    const int head = it_.head, first = it_.first, q_start = it_.q_start, rows = it_.rows, pos0 = it_.pos0;
    const int window = p.sliding_window;
    const uint32_t q_tile = smem + 2 * STAGES * TILE_BYTES + c * (64 * D * 2);
    const int r = c * GQ_BM + g;  // this thread's rows r and r + 8 of the item
    load_q_wg<T, D>(q_tile, p, (long long)(q_start + first + r), head, r < rows, r + 8 < rows, warp, g, t4);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    named_sync(1 + c, 128);  // the warpgroup's Q rows are in place for the tensor cores

    float o[1][DB][4];
    float m_a[1], m_b[1], l_a[1], l_b[1];
    clear_state<1, DB>(o, m_a, m_b, l_a, l_b);
    const float cs = p.scale * 1.4426950408889634f;

    auto tile = [&](int it, uint32_t (&prev)[1][BN / 16][4], uint32_t (&next)[1][BN / 16][4]) {
        const int k0 = key_lo + it * BN;
        const int s = it % STAGES;
        mbar_wait(full + 8 * s, (it / STAGES) & 1);  // tile it has landed ...
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // ... and is visible to the tensor cores
        float sc[1][NB][4];
        qk_tiles_wgmma_ss_issue<T, D, BN, 1>(sc, q_tile, smem + s * TILE_BYTES);
        if (it > 0) {
            pv_tile_wgmma_issue<T, D, BN, 1>(o, prev, smem + (STAGES + (it - 1) % STAGES) * TILE_BYTES);
            wgmma_wait<1>();  // S(it); P V of tile it - 1 may still run
        } else {
            wgmma_wait<0>();
        }
        overlapped_softmax<T, D, BN, 1>(it, sc, prev, next, o, m_a, m_b, l_a, l_b, k0, pos0, r, window, cs, t4, [&] {
            if (lane == 0) mbar_arrive(empty + 8 * ((it - 1) % STAGES));  // every warp's arrival frees the stage
        });
    };

    uint32_t pa[1][BN / 16][4], pb[1][BN / 16][4];
    for (int it = 0; it < tiles; it += 2) {
        tile(it, pb, pa);
        if (it + 1 < tiles) tile(it + 1, pa, pb);
    }
    overlapped_last_pv<T, D, BN, 1>(tiles, o, pa, pb, smem + (STAGES + (tiles - 1) % STAGES) * TILE_BYTES);
    if (lane == 0) mbar_arrive(empty + 8 * ((tiles - 1) % STAGES));
    store_o<T, D>(o[0], l_a[0], l_b[0], p, (long long)(q_start + first + r), head, r < rows, r + 8 < rows, t4);
#else
    __trap();
#endif
}

}  // namespace

// One extern "C" entry per kernel, cache type and head_dim: FLASH_ENTRY(name, kernel template, T, D, launch bounds)
#define FLASH_ENTRY(NAME, KERNEL, T, D, ...) \
    extern "C" __global__ void __launch_bounds__(__VA_ARGS__) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        KERNEL<T, D>(p); \
    }

// grid (num_heads, num_items), FA_WARPS * 32 threads
FLASH_ENTRY(flash_attention_bf16_d64, flash_attention, __nv_bfloat16, 64, FA_WARPS * 32)
FLASH_ENTRY(flash_attention_bf16_d128, flash_attention, __nv_bfloat16, 128, FA_WARPS * 32)
FLASH_ENTRY(flash_attention_f16_d64, flash_attention, __half, 64, FA_WARPS * 32)
FLASH_ENTRY(flash_attention_f16_d128, flash_attention, __half, 128, FA_WARPS * 32)

// grid (num_kv_heads * group / 4, num_items of GQ_BM rows), FA_WARPS * 32 threads; see flash_attention_gqa.
// 32-key tiles: three blocks an SM (168 registers a thread at head_dim 128, none spilled). The occupancy notes here
// are for sm_90a (H100); SMs with less shared memory hold fewer of the larger blocks.
#define FLASH_GQA_ENTRY(NAME, T, D, BN, MIN_BLOCKS) \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, MIN_BLOCKS) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        flash_attention_gqa<T, D, BN>(p); \
    }
FLASH_GQA_ENTRY(flash_attention_gqa_bf16_d64, __nv_bfloat16, 64, 32, 3)
FLASH_GQA_ENTRY(flash_attention_gqa_bf16_d128, __nv_bfloat16, 128, 32, 3)
FLASH_GQA_ENTRY(flash_attention_gqa_f16_d64, __half, 64, 32, 3)
FLASH_GQA_ENTRY(flash_attention_gqa_f16_d128, __half, 128, 32, 3)
// 64-key tiles: three blocks an SM at head_dim 64, two at 128 (none spilled)
FLASH_GQA_ENTRY(flash_attention_gqa_k64_bf16_d64, __nv_bfloat16, 64, 64, 3)
FLASH_GQA_ENTRY(flash_attention_gqa_k64_bf16_d128, __nv_bfloat16, 128, 64, 2)
FLASH_GQA_ENTRY(flash_attention_gqa_k64_f16_d64, __half, 64, 64, 3)
FLASH_GQA_ENTRY(flash_attention_gqa_k64_f16_d128, __half, 128, 64, 2)
// MT = 2: 32-row items, grid (num_kv_heads * group / 4, num_items of 2 * GQ_BM rows), two blocks an SM.
#define FLASH_GQA_W32_ENTRY(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, 2) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        flash_attention_gqa<T, D, 32, 2>(p); \
    }
FLASH_GQA_W32_ENTRY(flash_attention_gqa_w32_bf16_d64, __nv_bfloat16, 64)
FLASH_GQA_W32_ENTRY(flash_attention_gqa_w32_bf16_d128, __nv_bfloat16, 128)
FLASH_GQA_W32_ENTRY(flash_attention_gqa_w32_f16_d64, __half, 64)
FLASH_GQA_W32_ENTRY(flash_attention_gqa_w32_f16_d128, __half, 128)
// S on wgmma (sm_90a only; WG): 16-row items, grid as flash_attention_gqa's. Other targets get a kernel that traps
// (CudaBackend launches these on sm_90 GPUs only).
template <typename T, int D, int BN, int WG, int MT = 0>
__device__ __forceinline__ void flash_attention_gqa_wg(const FlashAttentionParams& p) {
#ifdef LATHE_WGMMA
    flash_attention_gqa<T, D, BN, MT, WG>(p);
#else
    __trap();
#endif
}
#define FLASH_GQA_WG_ENTRY(NAME, T, D, BN, WG, MIN_BLOCKS) \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, MIN_BLOCKS) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        flash_attention_gqa_wg<T, D, BN, WG>(p); \
    }
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wg_bf16_d64, __nv_bfloat16, 64, 32, 1, 3)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wg_bf16_d128, __nv_bfloat16, 128, 32, 1, 3)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wg_f16_d64, __half, 64, 32, 1, 3)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wg_f16_d128, __half, 128, 32, 1, 3)
// and O += P V on wgmma too (WG = 2)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_bf16_d64, __nv_bfloat16, 64, 32, 2, 3)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_bf16_d128, __nv_bfloat16, 128, 32, 2, 3)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_f16_d64, __half, 64, 32, 2, 3)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_f16_d128, __half, 128, 32, 2, 3)
// both on wgmma at 32 rows a warp (MT = 2): two 64-row tiles a block, Q in shared memory
#define FLASH_GQA_WG32_ENTRY(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, 2) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        flash_attention_gqa_wg<T, D, 32, 2, 2>(p); \
    }
FLASH_GQA_WG32_ENTRY(flash_attention_gqa_wgv_w32_bf16_d64, __nv_bfloat16, 64)
FLASH_GQA_WG32_ENTRY(flash_attention_gqa_wgv_w32_bf16_d128, __nv_bfloat16, 128)
FLASH_GQA_WG32_ENTRY(flash_attention_gqa_wgv_w32_f16_d64, __half, 64)
FLASH_GQA_WG32_ENTRY(flash_attention_gqa_wgv_w32_f16_d128, __half, 128)
// the overlapped kernel (flash_attention_gqa_overlap): 32-row items, three stages, two blocks an SM
#define FLASH_GQA_OVERLAP_ENTRY(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, 2) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        flash_attention_gqa_overlap<T, D>(p); \
    }
FLASH_GQA_OVERLAP_ENTRY(flash_attention_gqa_wgo_bf16_d64, __nv_bfloat16, 64)
FLASH_GQA_OVERLAP_ENTRY(flash_attention_gqa_wgo_bf16_d128, __nv_bfloat16, 128)
FLASH_GQA_OVERLAP_ENTRY(flash_attention_gqa_wgo_f16_d64, __half, 64)
FLASH_GQA_OVERLAP_ENTRY(flash_attention_gqa_wgo_f16_d128, __half, 128)
// both on wgmma over 64-key tiles (CudaBackend.FLASH_GQA_KEYS_PROPERTY 64): half the barriers, fences and waits a key
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_k64_bf16_d64, __nv_bfloat16, 64, 64, 2, 2)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_k64_bf16_d128, __nv_bfloat16, 128, 64, 2, 2)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_k64_f16_d64, __half, 64, 64, 2, 2)
FLASH_GQA_WG_ENTRY(flash_attention_gqa_wgv_k64_f16_d128, __half, 128, 64, 2, 2)
// the warp-specialised kernel (flash_attention_gqa_ws): 32-row items, one loading and two computing warpgroups, one block an SM
#define FLASH_GQA_WS_ENTRY(NAME, T, D) \
    extern "C" __global__ void __launch_bounds__(WS_THREADS, 1) NAME(const FlashAttentionParams p) { LATHE_PDL_WAIT(); \
        flash_attention_gqa_ws<T, D>(p); \
    }
FLASH_GQA_WS_ENTRY(flash_attention_gqa_ws_bf16_d64, __nv_bfloat16, 64)
FLASH_GQA_WS_ENTRY(flash_attention_gqa_ws_bf16_d128, __nv_bfloat16, 128)
FLASH_GQA_WS_ENTRY(flash_attention_gqa_ws_f16_d64, __half, 64)
FLASH_GQA_WS_ENTRY(flash_attention_gqa_ws_f16_d128, __half, 128)
