// RMSNorm, optionally fused with the residual add.
#include "common.cuh"
using namespace lathe;

struct RmsNormParams {
    float* residual;       // [groups * d] or null; when set: residual += x, then norm the new residual
    const float* x;        // [groups * d]
    const void* weight;    // [d] in `dtype`
    void* out;             // [groups * d] in `out_dtype`; may alias x when F32
    int groups;            // rows * (row width / d)
    int d;                 // normalised group width
    int dtype;
    float eps;
    int out_dtype;         // DT_F32, or a weight format (rounded to nearest even): the next GEMM's input
};

// One block per group. Pass 1 sums squares (and updates the residual); pass 2 scales. Every element
// is read and written by the same thread in both passes, so an F32 out may alias x or residual.
extern "C" __global__ void rms_norm(const RmsNormParams p) {
    LATHE_PDL_WAIT();
    long long base = (long long)blockIdx.x * p.d;
    float ss = 0.f;
    for (int j = threadIdx.x; j < p.d; j += blockDim.x) {
        float v = p.x[base + j];
        if (p.residual != nullptr) {
            v = p.residual[base + j] + v;
            p.residual[base + j] = v;
        }
        ss += v * v;
    }
    ss = block_sum(ss);
    // same formula as the CPU backend: mean in float, reciprocal square root in double
    float inv = (float)(1.0 / sqrt((double)(ss / p.d + p.eps)));
    const float* src = p.residual != nullptr ? p.residual : p.x;
    for (int j = threadIdx.x; j < p.d; j += blockDim.x) {
        float v = src[base + j];
        store_f(p.out, p.out_dtype, base + j, __fmul_rn(__fmul_rn(v, inv), load_f(p.weight, p.dtype, j)));
    }
}
