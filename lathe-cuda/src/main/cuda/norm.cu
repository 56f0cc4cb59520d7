// RMSNorm, optionally fused with the residual add.
#include "common.cuh"
using namespace lathe;

struct RmsNormParams {
    float* residual;       // [groups * d] or null; when set (x F32 then): residual += x, then norm the new residual
    const void* x;         // [groups * d] in `x_dtype`
    const void* weight;    // [d] in `dtype`
    void* out;             // [groups * d] in `out_dtype`; may alias x when F32
    int groups;            // rows * (row width / d)
    int d;                 // normalised group width
    int dtype;
    float eps;
    int out_dtype;         // DT_F32, or a weight format (rounded to nearest even): the next GEMM's input
    int x_dtype;           // DT_F32, or a 16-bit format (a residual stream held in the weights' format)
};

// The block's sum of its threads' sums of squares, as 1 / rms: the mean in float, the reciprocal square root in double
// (the CPU backend's formula).
__device__ __forceinline__ float inv_rms(float ss, int d, float eps) {
    ss = block_sum(ss);
    return (float)(1.0 / sqrt((double)(ss / d + eps)));
}

// The float4 path of rms_norm: d a multiple of 4 and at most NORM_VEC * 4 values a thread. Each thread keeps its
// float4s in registers between the two passes, so x and the residual are read once.
#define NORM_VEC 8

__device__ __forceinline__ void rms_norm_vec(const RmsNormParams& p) {
    constexpr int NV = NORM_VEC;
    const long long base = (long long)blockIdx.x * p.d;
    const int d4 = p.d >> 2;
    float4* r4 = p.residual != nullptr ? reinterpret_cast<float4*>(p.residual + base) : nullptr;
    float4 v[NV];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < d4) {
            float4 a = load4_f(p.x, p.x_dtype, base + 4LL * i);
            if (r4 != nullptr) {
                const float4 r = r4[i];
                a = make_float4(r.x + a.x, r.y + a.y, r.z + a.z, r.w + a.w);
                r4[i] = a;
            }
            v[k] = a;
            ss += a.x * a.x;
            ss += a.y * a.y;
            ss += a.z * a.z;
            ss += a.w * a.w;
        }
    }
    const float inv = inv_rms(ss, p.d, p.eps);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < d4) {
            const int j = 4 * i;
            const float y0 = __fmul_rn(__fmul_rn(v[k].x, inv), load_f(p.weight, p.dtype, j));
            const float y1 = __fmul_rn(__fmul_rn(v[k].y, inv), load_f(p.weight, p.dtype, j + 1));
            const float y2 = __fmul_rn(__fmul_rn(v[k].z, inv), load_f(p.weight, p.dtype, j + 2));
            const float y3 = __fmul_rn(__fmul_rn(v[k].w, inv), load_f(p.weight, p.dtype, j + 3));
            store4_f(p.out, p.out_dtype, base + j, make_float4(y0, y1, y2, y3));
        }
    }
}

// rms_norm of 16-bit rows into 16-bit rows with a 16-bit weight, all in T, no residual (a long step's norms of the
// 16-bit residual stream): one 16-byte load (eight values) of x and of the weight per chunk, the weight's loads
// issued with x's before the sum, so the scaling after it waits for nothing; one 16-byte store per chunk. Half the
// memory instructions of the float4 path, which moves 8 bytes of a 16-bit row at a time and loads the weight value by
// value after the sum. d a multiple of 8 that the block covers in NORM_VEC / 2 chunks a thread, rows 16-byte aligned.
template <typename T>
__device__ __forceinline__ void rms_norm_vec16(const RmsNormParams& p) {
    constexpr int NC = NORM_VEC / 2;
    const long long base = (long long)blockIdx.x * p.d;
    const int d8 = p.d >> 3;
    const int4* x8 = reinterpret_cast<const int4*>(static_cast<const uint16_t*>(p.x) + base);
    const int4* w8 = reinterpret_cast<const int4*>(p.weight);
    int4* o8 = reinterpret_cast<int4*>(static_cast<uint16_t*>(p.out) + base);
    int4 xr[NC], wr[NC];
#pragma unroll
    for (int k = 0; k < NC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < d8) {
            xr[k] = x8[i];
            wr[k] = w8[i];
        }
    }
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < NC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < d8) {
            float v[8];
            widen8<T>(xr[k], v);
#pragma unroll
            for (int e = 0; e < 8; e++) ss += v[e] * v[e];
        }
    }
    const float inv = inv_rms(ss, p.d, p.eps);
#pragma unroll
    for (int k = 0; k < NC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < d8) {
            float v[8], w[8];
            widen8<T>(xr[k], v);
            widen8<T>(wr[k], w);
            int4 out;
            uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                o[e] = pack_pair<T>(__fmul_rn(__fmul_rn(v[2 * e], inv), w[2 * e]),
                                    __fmul_rn(__fmul_rn(v[2 * e + 1], inv), w[2 * e + 1]));
            }
            o8[i] = out;
        }
    }
}

// One block per group. Where d is a multiple of 4 that the block covers in at most NORM_VEC float4s a thread (and
// the rows are 16-byte aligned, which d % 4 == 0 gives for the pool's buffers), the float4 path above; otherwise
// pass 1 sums squares (and updates the residual) and pass 2 scales, every element read and written by the same
// thread in both passes, so an F32 out may alias x or residual (the float4 path reads all before it writes, too).
extern "C" __global__ void rms_norm(const RmsNormParams p) {
    LATHE_PDL_WAIT();
    const bool aligned = ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.out)
                           | reinterpret_cast<uintptr_t>(p.residual)) & 15) == 0;
    if ((p.d & 7) == 0 && aligned && p.residual == nullptr && (reinterpret_cast<uintptr_t>(p.weight) & 15) == 0
        && p.x_dtype != DT_F32 && p.x_dtype == p.out_dtype && p.x_dtype == p.dtype && p.d <= 4 * NORM_VEC * (int)blockDim.x) {
        if (p.x_dtype == DT_BF16) rms_norm_vec16<__nv_bfloat16>(p);
        else rms_norm_vec16<__half>(p);
        return;
    }
    if ((p.d & 3) == 0 && aligned && p.d <= 4 * NORM_VEC * (int)blockDim.x) {
        rms_norm_vec(p);
        return;
    }
    long long base = (long long)blockIdx.x * p.d;
    float ss = 0.f;
    for (int j = threadIdx.x; j < p.d; j += blockDim.x) {
        float v = load_f(p.x, p.x_dtype, base + j);
        if (p.residual != nullptr) {
            v = p.residual[base + j] + v;
            p.residual[base + j] = v;
        }
        ss += v * v;
    }
    const float inv = inv_rms(ss, p.d, p.eps);
    for (int j = threadIdx.x; j < p.d; j += blockDim.x) {
        float v = p.residual != nullptr ? p.residual[base + j] : load_f(p.x, p.x_dtype, base + j);
        store_f(p.out, p.out_dtype, base + j, __fmul_rn(__fmul_rn(v, inv), load_f(p.weight, p.dtype, j)));
    }
}
