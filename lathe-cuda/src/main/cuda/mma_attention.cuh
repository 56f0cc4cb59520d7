// Tensor-core building blocks shared by the attention kernels (flash_attention.cu for prefill,
// split_attention.cu for decode): mma.m16n8k16 and ldmatrix wrappers for BF16 and F16, the swizzled layout of
// K/V tiles in shared memory, division by the cache's block size, S = Q K^T and O += P V over a tile, and one
// tile's online softmax.
//
// mma.m16n8k16 fragments (g = lane / 4, t = lane % 4; PTX ISA "Matrix Fragments for mma.m16n8k16"):
//   A 16x16 row-major, 4 regs: a0 (row g, cols 2t,2t+1), a1 (row g+8, same cols), a2 (row g, cols 2t+8,+9),
//     a3 (row g+8, cols 2t+8,+9); the lower column in the low half of each register.
//   B 16x8, 2 regs: b0 (k rows 2t,2t+1, col g), b1 (k rows 2t+8,+9, col g).
//   C/D 16x8 F32, 4 regs: c0,c1 (row g, cols 2t,2t+1), c2,c3 (row g+8, cols 2t,2t+1).
// For S = Q K^T, B[k=d][n=key] = K[key][d]: a K row (key-major, d contiguous) gives b0/b1 through plain
// ldmatrix. For O += P V, B[k=key][n=d] = V[key][d] needs ldmatrix.trans. The S accumulators of two
// adjacent 8-key blocks are exactly the A fragment of P for those 16 keys.
//
// Shared memory rows hold head_dim 16-bit values as 16-byte chunks; chunk c of key row r is stored at
// chunk c ^ (r & 7), so the eight rows one ldmatrix phase reads hit eight different bank groups.
#pragma once
#include "common.cuh"

namespace lathe {
namespace {

template <typename T> struct Mma;
// pack: two floats rounded to T in one register (lo in the low half); run: d += a b on the tensor cores
#define LATHE_MMA(T, TYPE) \
    template <> struct Mma<T> { \
        static __device__ __forceinline__ uint32_t pack(float lo, float hi) { return pack_pair<T>(lo, hi); } \
        static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 " \
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n" \
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1)); \
        } \
    };
LATHE_MMA(__nv_bfloat16, "bf16")
LATHE_MMA(__half, "f16")
#undef LATHE_MMA

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// Division of non-negative ints below 2^31 by a divisor fixed for the kernel (the cache's block size), as a
// multiply-high, an add and a shift: with s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1,
// floor(t / d) = (umulhi(t, m) + t) >> s (division by invariant integers using multiplication, Granlund and
// Montgomery). A runtime `t / d` is a long instruction sequence, and the tile loaders divide once per key (the decode
// kernel's) or per 16-byte chunk (the flash kernels').
struct BlockDiv {
    int d;
    uint32_t m;
    int s;
    __device__ __forceinline__ explicit BlockDiv(int divisor) : d(divisor) {
        s = 0;
        while ((1 << s) < d) s++;
        m = static_cast<uint32_t>(((1ull << 32) * ((1ull << s) - static_cast<unsigned long long>(d))) / d + 1);
    }
    __device__ __forceinline__ int div(int t) const { return static_cast<int>((__umulhi(static_cast<uint32_t>(t), m) + static_cast<uint32_t>(t)) >> s); }
    // the cache slot of position t in a sequence with block table `table`
    __device__ __forceinline__ long long slot(const int* table, int t) const {
        const int b = div(t);
        return (long long)table[b] * d + (t - b * d);
    }
};

// Byte offset of chunk `chunk` (8 values) of key row `key` in a swizzled tile of D-value rows.
template <int D> __device__ __forceinline__ uint32_t tile_offset(int key, int chunk) {
    return static_cast<uint32_t>((key * D + ((chunk ^ (key & 7)) << 3)) * 2);
}

// S = Q K^T for one tile of NB * 8 keys from the K tile at k_base (mma m16n8k16; S zeroed first). ldmatrix
// lane roles: lane supplies row mr = lane & 7 of 8x8 matrix mi = lane >> 3.
template <typename T, int D, int NB>
__device__ __forceinline__ void qk_tile(float (&s)[NB][4], const uint32_t (&qf)[D / 16][4], uint32_t k_base, int mi, int mr) {
#pragma unroll
    for (int n = 0; n < NB; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
#pragma unroll
        for (int n2 = 0; n2 < NB / 2; n2++) {
            // matrices: keys 16n2+{0..7, 0..7, 8..15, 8..15} x d chunks {2k, 2k+1, 2k, 2k+1}
            uint32_t b[4];
            ldmatrix_x4(b, k_base + tile_offset<D>(n2 * 16 + (mi >> 1) * 8 + mr, 2 * k + (mi & 1)));
            Mma<T>::run(s[2 * n2], qf[k], b[0], b[1]);
            Mma<T>::run(s[2 * n2 + 1], qf[k], b[2], b[3]);
        }
    }
}

// qk_tile for M tiles of 16 query rows at once, with Q's A fragments read from shared memory (tile m's 16 rows of
// D values at q_base + m * 32 * D, swizzled as a K tile; see store_q_rows) one k step at a time instead of held in
// registers for the whole kernel. Each K fragment serves all M row tiles, so a tile's K is read from shared memory
// once per M * 16 rows.
template <typename T, int D, int NB, int M>
__device__ __forceinline__ void qk_tile_q_shared(float (&s)[M][NB][4], uint32_t q_base, uint32_t k_base, int mi, int mr) {
#pragma unroll
    for (int m = 0; m < M; m++) {
#pragma unroll
        for (int n = 0; n < NB; n++) s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0.f;
    }
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
        // matrices: rows {0..7, 8..15, 0..7, 8..15} x d chunks {2k, 2k, 2k+1, 2k+1}: a0, a1, a2, a3
        uint32_t a[M][4];
#pragma unroll
        for (int m = 0; m < M; m++) ldmatrix_x4(a[m], q_base + m * (16 * D * 2) + tile_offset<D>((mi & 1) * 8 + mr, 2 * k + (mi >> 1)));
#pragma unroll
        for (int n2 = 0; n2 < NB / 2; n2++) {
            uint32_t b[4];
            ldmatrix_x4(b, k_base + tile_offset<D>(n2 * 16 + (mi >> 1) * 8 + mr, 2 * k + (mi & 1)));
#pragma unroll
            for (int m = 0; m < M; m++) {
                Mma<T>::run(s[m][2 * n2], a[m], b[0], b[1]);
                Mma<T>::run(s[m][2 * n2 + 1], a[m], b[2], b[3]);
            }
        }
    }
}

// Stores A fragments of 16 rows (this thread's a0..a3 for each 16-wide k step, as qk_tile takes them) at q_base in
// the swizzled tile layout, where qk_tile_q_shared finds them again.
template <int D>
__device__ __forceinline__ void store_q_rows(uint32_t q_base, const uint32_t (&qf)[D / 16][4], int g, int t4) {
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
        // a0: row g, chunk 2k; a1: row g + 8, chunk 2k; a2: row g, chunk 2k + 1; a3: row g + 8, chunk 2k + 1; the
        // pair of values at 2 * t4 within the chunk
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const uint32_t at = q_base + tile_offset<D>(g + (r & 1) * 8, 2 * k + (r >> 1)) + 4 * t4;
            asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(at), "r"(qf[k][r]) : "memory");
        }
    }
}

// A fragments of Q rows a and b (head_dim D floats at qa and qb; b is row a + 8 of the mma's rows), rounded to T
// once; a row that is not valid (va, vb false) is zero, computed on and never stored.
template <typename T, int D>
__device__ __forceinline__ void q_fragments(uint32_t (&qf)[D / 16][4], const float* qa, const float* qb, bool va, bool vb,
                                            int t4) {
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
        const int d = k * 16 + 2 * t4;
        const float2 x0 = va ? *reinterpret_cast<const float2*>(qa + d) : make_float2(0.f, 0.f);
        const float2 x1 = vb ? *reinterpret_cast<const float2*>(qb + d) : make_float2(0.f, 0.f);
        const float2 x2 = va ? *reinterpret_cast<const float2*>(qa + d + 8) : make_float2(0.f, 0.f);
        const float2 x3 = vb ? *reinterpret_cast<const float2*>(qb + d + 8) : make_float2(0.f, 0.f);
        qf[k][0] = Mma<T>::pack(x0.x, x0.y);
        qf[k][1] = Mma<T>::pack(x1.x, x1.y);
        qf[k][2] = Mma<T>::pack(x2.x, x2.y);
        qf[k][3] = Mma<T>::pack(x3.x, x3.y);
    }
}

// q_fragments for queries not yet rotated: rows a and b of one head (D values of T at qa and qb) rotated by the
// rotary tables' rows of their tokens (D / 2 floats of cos and sin at ca, sa and cb, sb) as they are loaded. Element
// d < D / 2 pairs with d + D / 2, which this thread loads too (k step k + D / 32), so the rotation stays in the thread.
// The arithmetic is rope_write_kv's (kv_cache.cu) operation for operation, so the fragments equal q_fragments' of
// the queries that kernel writes.
template <typename T, int D>
__device__ __forceinline__ void q_fragments_rotated(uint32_t (&qf)[D / 16][4], const T* qa, const T* qb, const float* ca,
                                                    const float* sa, const float* cb, const float* sb, bool va, bool vb,
                                                    int t4) {
    constexpr int H = D / 2;
#pragma unroll
    for (int k = 0; k < D / 32; k++) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            // r: a0 row a at d, a1 row b at d, a2 row a at d + 8, a3 row b at d + 8 (the mma's A fragment order)
            const bool valid = (r & 1) ? vb : va;
            const T* x = (r & 1) ? qb : qa;
            const float* c = (r & 1) ? cb : ca;
            const float* sn = (r & 1) ? sb : sa;
            const int d = k * 16 + 2 * t4 + (r >> 1) * 8;
            float2 y1 = make_float2(0.f, 0.f), y2 = make_float2(0.f, 0.f);
            if (valid) {
                const float2 x1 = Pair16<T>::widen(*reinterpret_cast<const typename Pair16<T>::type*>(x + d));
                const float2 x2 = Pair16<T>::widen(*reinterpret_cast<const typename Pair16<T>::type*>(x + d + H));
                const float2 cs = *reinterpret_cast<const float2*>(c + d);
                const float2 sv = *reinterpret_cast<const float2*>(sn + d);
                y1.x = __fsub_rn(__fmul_rn(x1.x, cs.x), __fmul_rn(x2.x, sv.x));
                y1.y = __fsub_rn(__fmul_rn(x1.y, cs.y), __fmul_rn(x2.y, sv.y));
                y2.x = __fadd_rn(__fmul_rn(x2.x, cs.x), __fmul_rn(x1.x, sv.x));
                y2.y = __fadd_rn(__fmul_rn(x2.y, cs.y), __fmul_rn(x1.y, sv.y));
            }
            qf[k][r] = Mma<T>::pack(y1.x, y1.y);
            qf[k + D / 32][r] = Mma<T>::pack(y2.x, y2.y);
        }
    }
}

// The row sums l_a and l_b of a quad (the four lanes that share rows a and b), each lane's part added up.
__device__ __forceinline__ void quad_sums(float& l_a, float& l_b) {
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
    }
}

// O += P V for one tile of KB * 16 keys from the V tile at v_base, for M tiles of 16 query rows (o and pf point at
// M tiles' accumulators and P fragments; a single tile passes &o and &pf); each V fragment serves all M row tiles.
template <typename T, int D, int KB, int M = 1>
__device__ __forceinline__ void pv_tile(float (*o)[D / 8][4], const uint32_t (*pf)[KB][4], uint32_t v_base, int mi, int mr) {
#pragma unroll
    for (int k = 0; k < KB; k++) {
#pragma unroll
        for (int d2 = 0; d2 < D / 16; d2++) {
            // matrices: keys 16k+{0..7, 8..15, 0..7, 8..15} x d chunks {2d2, 2d2, 2d2+1, 2d2+1}, transposed
            uint32_t b[4];
            ldmatrix_x4_trans(b, v_base + tile_offset<D>(k * 16 + (mi & 1) * 8 + mr, 2 * d2 + (mi >> 1)));
#pragma unroll
            for (int m = 0; m < M; m++) {
                Mma<T>::run(o[m][2 * d2], pf[m][k], b[0], b[1]);
                Mma<T>::run(o[m][2 * d2 + 1], pf[m][k], b[2], b[3]);
            }
        }
    }
}

// 2^x on the special-function unit alone, subnormal results flushed to zero (a weight below 2^-126 of the row's
// largest adds nothing a 16-bit P or an F32 row sum can hold); exp2f adds a range check and two multiplies.
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// How far (log2 units) a row's max may grow past the running max before softmax_scores moves it: P stays below 2^8.
#define SOFTMAX_LAZY_LOG2 8.f

// One key tile's online softmax for this thread's rows a and b (S holds NB blocks of 8 keys from k0), all but O's
// rescale: mask keys after the row's position or before its window where `mask` says the tile may hold some, update
// the running max m (log2 units: the scores times c) and this thread's part of the row sums l, round P into A
// fragments of 16 keys each for P V, and give the factors O's rows must be multiplied by (rescale_o) before P V adds
// this tile. The mask is a compare and a select a score, without branches; the scale goes into the exponent's
// multiply-add (max(s c) = c max(s) for c > 0).
template <typename T, int NB>
__device__ __forceinline__ void softmax_scores(float (&s)[NB][4], uint32_t (&pf)[NB / 2][4], float& m_a, float& m_b,
                                               float& l_a, float& l_b, int k0, int pos_a, int pos_b, int window, bool mask,
                                               float c, int t4, float& corr_a, float& corr_b) {
    if (mask) {
        // score (n, e) is key k0 + 2 t4 + 8 n + e: masked where 8 n + e is above hi (after the row's position) or at
        // most lo (before its window)
        const int hi_a = pos_a - k0 - 2 * t4, hi_b = pos_b - k0 - 2 * t4;
        const int lo_a = window > 0 ? hi_a - window : INT_MIN, lo_b = window > 0 ? hi_b - window : INT_MIN;
#pragma unroll
        for (int n = 0; n < NB; n++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int kk = n * 8 + e;
                s[n][e] = kk > hi_a || kk <= lo_a ? -INFINITY : s[n][e];
                s[n][2 + e] = kk > hi_b || kk <= lo_b ? -INFINITY : s[n][2 + e];
            }
        }
    }
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int n = 0; n < NB; n++) {
        mx_a = fmaxf(mx_a, fmaxf(s[n][0], s[n][1]));
        mx_b = fmaxf(mx_b, fmaxf(s[n][2], s[n][3]));
    }
    // the four threads of a quad share rows g and g+8
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
    }
    float new_a = fmaxf(m_a, mx_a * c), new_b = fmaxf(m_b, mx_b * c);
    // Lazy rescaling: the running max m only moves when some row of the warp has grown past it by more than
    // SOFTMAX_LAZY_LOG2 (then every row of the warp takes its new max, as before). Otherwise the rows keep their
    // stale m, so that P may reach 2^SOFTMAX_LAZY_LOG2 (BF16/F16 and the float32 O and l hold that easily) and O's
    // factors stay exactly 1: rescale_o skips its multiplications for the warp. softmax(x) = 2^(x - m) / sum for any
    // m, so only the rounding of P changes. A row with no key yet has m = -inf (grown: inf; still none: NaN, no).
    if (!__any_sync(0xffffffffu, new_a - m_a > SOFTMAX_LAZY_LOG2 || new_b - m_b > SOFTMAX_LAZY_LOG2)) {
        new_a = m_a;
        new_b = m_b;
    }
    // a row with no key yet keeps m = -inf: subtract 0 instead, so exp2 gives 0, not NaN
    const float use_a = new_a == -INFINITY ? 0.f : new_a, use_b = new_b == -INFINITY ? 0.f : new_b;
    corr_a = new_a == m_a ? 1.f : exp2_ftz(m_a - use_a);
    corr_b = new_b == m_b ? 1.f : exp2_ftz(m_b - use_b);
    m_a = new_a;
    m_b = new_b;
    float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
    for (int n = 0; n < NB; n++) {
        const float p0 = exp2_ftz(fmaf(s[n][0], c, -use_a)), p1 = exp2_ftz(fmaf(s[n][1], c, -use_a));
        const float p2 = exp2_ftz(fmaf(s[n][2], c, -use_b)), p3 = exp2_ftz(fmaf(s[n][3], c, -use_b));
        sum_a += p0 + p1;
        sum_b += p2 + p3;
        // n even: a0 (row g) / a1 (row g+8) of key chunk n/2; n odd: a2 / a3
        pf[n >> 1][(n & 1) * 2] = Mma<T>::pack(p0, p1);
        pf[n >> 1][(n & 1) * 2 + 1] = Mma<T>::pack(p2, p3);
    }
    l_a = l_a * corr_a + sum_a;
    l_b = l_b * corr_b + sum_b;
}

// O's rows a and b times softmax_scores' factors. Once the running max has settled, most tiles leave it as it is:
// then O keeps its scale (the factor is exactly 1 for every row of the warp) and the DB * 4 multiplications are
// skipped, warp-uniformly.
template <int DB>
__device__ __forceinline__ void rescale_o(float (&o)[DB][4], float corr_a, float corr_b) {
    if (__any_sync(0xffffffffu, corr_a != 1.f || corr_b != 1.f)) {
#pragma unroll
        for (int i = 0; i < DB; i++) {
            o[i][0] *= corr_a;
            o[i][1] *= corr_a;
            o[i][2] *= corr_b;
            o[i][3] *= corr_b;
        }
    }
}

// softmax_scores, then rescale_o: one key tile's whole online softmax.
template <typename T, int NB, int DB>
__device__ __forceinline__ void softmax_tile(float (&s)[NB][4], uint32_t (&pf)[NB / 2][4], float (&o)[DB][4], float& m_a,
                                             float& m_b, float& l_a, float& l_b, int k0, int pos_a, int pos_b, int window,
                                             bool mask, float c, int t4) {
    float corr_a, corr_b;
    softmax_scores<T, NB>(s, pf, m_a, m_b, l_a, l_b, k0, pos_a, pos_b, window, mask, c, t4, corr_a, corr_b);
    rescale_o<DB>(o, corr_a, corr_b);
}

// x and y at out + at (an even element offset): a float2 store for F32, else one 32-bit store of the pair in T
// (the cache's 16-bit format), rounded to nearest even.
template <typename T>
__device__ __forceinline__ void store_pair(void* out, bool out16, long long at, float x, float y) {
    if (out16) static_cast<uint32_t*>(out)[at / 2] = Mma<T>::pack(x, y);
    else static_cast<float2*>(out)[at / 2] = make_float2(x, y);
}

}  // namespace
}  // namespace lathe
