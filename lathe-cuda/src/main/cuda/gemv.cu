// Skinny matrix products for decode: out[n, out_f] = x[n, in] @ w[out_f, in]^T (+ bias) for n <= 8
// (CudaBackend.GEMV_MAX_ROWS; how many rows use them is CudaBackend.gemvMaxRows(), more go to cuBLASLt).
//
// At a handful of rows the product is bound by reading the weights once, so there is nothing to gain
// from tensor cores, and the activations can stay float32 (no rounding to the weight type). One warp owns one output feature: its lanes stream the
// weight row in 16-byte pieces (8 BF16/F16 values or 4 float32), several pieces in flight per lane,
// multiply them with the n activation rows (read through L1, where every warp of the block reuses
// them), and reduce across the warp at the end. Weights are loaded with the streaming hint so they do
// not push the activations out of L1.
//
// One kernel per row bound (1, 2, 4, 8): the accumulators and the pieces in flight are sized at compile
// time, so the single-row kernel keeps few registers, more warps per SM and more bytes in flight, which
// is what a memory-bound kernel needs.
#include "common.cuh"
using namespace lathe;

#define GEMV_WARPS 8

struct GemvParams {
    const float* x;     // [n, in]
    const void* w;      // [out_f, in] in `dtype`
    const void* bias;   // [out_f] in `bias_dtype`, or null
    float* out;         // [n, out_f]
    int n;
    int in;
    int out_f;
    int dtype;
    int bias_dtype;
    int glu_inner;      // > 0: w is [gate; up] (out_f = 2 * glu_inner) and out [n, glu_inner] gets
                        // silu(x @ gate_j + b_j) * (x @ up_j + b_(j + glu_inner)), as silu_mul computes it
};

template <typename T> struct Piece {  // what one 16-byte load of weights holds: eight 16-bit values
    static constexpr int N = 8;
    __device__ static void widen(const int4& raw, float* f) { widen8<T>(raw, f); }
};
template <> struct Piece<float> {
    static constexpr int N = 4;
    __device__ static void widen(const int4& raw, float* f) {
        f[0] = __int_as_float(raw.x);
        f[1] = __int_as_float(raw.y);
        f[2] = __int_as_float(raw.z);
        f[3] = __int_as_float(raw.w);
    }
};

// acc[j] += sum_i wf[i] * x[j, k + i] for the n (<= MAXN) activation rows.
template <typename T, int MAXN>
__device__ __forceinline__ void accumulate(const float* x, int n, int in, int k, const float* wf, float* acc) {
    constexpr int N = Piece<T>::N;
#pragma unroll
    for (int j = 0; j < MAXN; j++) {
        if (j < n) {
            const float4* xv = reinterpret_cast<const float4*>(x + (long long)j * in + k);
            float s = acc[j];
#pragma unroll
            for (int q = 0; q < N / 4; q++) {
                float4 a = xv[q];
                s = fmaf(wf[4 * q], a.x, s);
                s = fmaf(wf[4 * q + 1], a.y, s);
                s = fmaf(wf[4 * q + 2], a.z, s);
                s = fmaf(wf[4 * q + 3], a.w, s);
            }
            acc[j] = s;
        }
    }
}

// One warp computes the dot products of weight row `row` with every activation row: acc[j] holds each
// lane's share, to be reduced across the warp. Per trip each lane has UNROLL 16-byte pieces of the weight row in flight.
template <typename T, int MAXN, int UNROLL>
__device__ __forceinline__ void gemv_dot(const GemvParams& p, int row, int lane, float* acc) {
    constexpr int N = Piece<T>::N;
    const T* wrow = static_cast<const T*>(p.w) + (long long)row * p.in;
#pragma unroll
    for (int j = 0; j < MAXN; j++) acc[j] = 0.f;

    // 16-byte pieces need the row to start on a 16-byte boundary and activations on one too (in % N == 0
    // keeps both, given 256-byte aligned allocations); otherwise everything goes through the scalar tail
    int vec_end = (p.in % N == 0) ? p.in : 0;
    const int step = 32 * N;
    int k = lane * N;
    for (; k + (UNROLL - 1) * step < vec_end; k += UNROLL * step) {
        int4 raw[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) raw[u] = __ldcs(reinterpret_cast<const int4*>(wrow + k + u * step));
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            float wf[N];
            Piece<T>::widen(raw[u], wf);
            accumulate<T, MAXN>(p.x, p.n, p.in, k + u * step, wf, acc);
        }
    }
    for (; k < vec_end; k += step) {
        int4 raw = __ldcs(reinterpret_cast<const int4*>(wrow + k));
        float wf[N];
        Piece<T>::widen(raw, wf);
        accumulate<T, MAXN>(p.x, p.n, p.in, k, wf, acc);
    }
    for (int kk = vec_end + lane; kk < p.in; kk += 32) {
        float wv = load_f(p.w, p.dtype, (long long)row * p.in + kk);
#pragma unroll
        for (int j = 0; j < MAXN; j++) {
            if (j < p.n) acc[j] = fmaf(wv, p.x[(long long)j * p.in + kk], acc[j]);
        }
    }
}

// Output feature `row`: the plain product, or (GLU) the gated activation of gate row `row` and up row
// `row + glu_inner` (the same sums, bias additions and silu arithmetic as gemv then silu_mul).
template <typename T, int MAXN, int UNROLL, bool GLU>
__device__ __forceinline__ void gemv_row(const GemvParams& p, int row, int lane) {
    float acc[MAXN];
    gemv_dot<T, MAXN, UNROLL>(p, row, lane, acc);
    float b = p.bias != nullptr ? load_f(p.bias, p.bias_dtype, row) : 0.f;
    if constexpr (!GLU) {
#pragma unroll
        for (int j = 0; j < MAXN; j++) {
            if (j < p.n) {
                float s = warp_sum(acc[j]);
                if (lane == 0) p.out[(long long)j * p.out_f + row] = s + b;
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < MAXN; j++) acc[j] = j < p.n ? warp_sum(acc[j]) + b : 0.f;  // the gate, as gemv writes it
        const int up_row = row + p.glu_inner;
        float up[MAXN];
        gemv_dot<T, MAXN, UNROLL>(p, up_row, lane, up);
        float bu = p.bias != nullptr ? load_f(p.bias, p.bias_dtype, up_row) : 0.f;
#pragma unroll
        for (int j = 0; j < MAXN; j++) {
            if (j < p.n) {
                float a = acc[j], u = warp_sum(up[j]) + bu;
                if (lane == 0) p.out[(long long)j * p.glu_inner + row] = __fmul_rn(__fdiv_rn(a, __fadd_rn(1.f, expf(-a))), u);
            }
        }
    }
}

// Warp g of the grid computes output feature g; the grid has ceil(out_f / GEMV_WARPS) blocks, or
// ceil(glu_inner / GEMV_WARPS) for the GLU kernels.
template <int MAXN, int UNROLL, bool GLU>
__device__ __forceinline__ void gemv_any(const GemvParams& p) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= (GLU ? p.glu_inner : p.out_f)) return;
    switch (p.dtype) {
        case DT_BF16: gemv_row<__nv_bfloat16, MAXN, UNROLL, GLU>(p, row, lane); break;
        case DT_F16: gemv_row<__half, MAXN, UNROLL, GLU>(p, row, lane); break;
        default: gemv_row<float, MAXN, UNROLL, GLU>(p, row, lane);
    }
}

// Blocks of GEMV_WARPS warps; gemvK takes n = 1..K activation rows, one weight row per warp. The single-row
// kernel keeps 4 pieces in flight with 4 blocks an SM: on an H100 it beat 8 pieces with 3 blocks, two rows
// per warp and a persistent grid on the Llama-3-8B shapes (bench/results, session 2 op timings).
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 4) gemv1(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<1, 4, false>(p); }
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 3) gemv2(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<2, 8, false>(p); }
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32) gemv4(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<4, 4, false>(p); }
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32) gemv8(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<8, 4, false>(p); }

// The gate/up projection with the SiLU-and-multiply in its epilogue (glu_inner > 0): one warp, two weight
// rows, the activation written once; no [n, 2 * inner] intermediate and no separate silu_mul launch.
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 4) gemv1_glu(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<1, 4, true>(p); }
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 3) gemv2_glu(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<2, 8, true>(p); }
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32) gemv4_glu(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<4, 4, true>(p); }
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32) gemv8_glu(const GemvParams p) { LATHE_PDL_WAIT(); gemv_any<8, 4, true>(p); }
