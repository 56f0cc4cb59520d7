// Gated activations.
#include "common.cuh"
using namespace lathe;

struct SiluMulParams {
    const float* x;  // [n, 2 * inner]: gate columns, then up columns
    float* out;      // [n, inner]
    long long n;
    int inner;
};

// out[r, j] = silu(x[r, j]) * x[r, j + inner]
extern "C" __global__ void silu_mul(const SiluMulParams p) {
    LATHE_PDL_WAIT();
    long long total = p.n * p.inner;
    for (long long i = global_index(); i < total; i += global_stride()) {
        long long r = i / p.inner;
        int j = (int)(i - r * p.inner);
        float a = p.x[r * 2 * p.inner + j];
        float b = p.x[r * 2 * p.inner + p.inner + j];
        p.out[i] = __fmul_rn(__fdiv_rn(a, __fadd_rn(1.f, expf(-a))), b);
    }
}

struct SiluMulToParams {
    const float* x;  // [n, 2 * inner]: gate columns, then up columns
    void* out;       // [n, inner] in `dtype`
    long long n;
    int inner;
    int dtype;
};

// silu_mul with its result stored in a weight format (rounded to nearest even): the same value as silu_mul
// followed by convert_from_f32, without the float32 round trip. Feeds the down projection's GEMM directly.
extern "C" __global__ void silu_mul_to(const SiluMulToParams p) {
    LATHE_PDL_WAIT();
    long long total = p.n * p.inner;
    for (long long i = global_index(); i < total; i += global_stride()) {
        long long r = i / p.inner;
        int j = (int)(i - r * p.inner);
        float a = p.x[r * 2 * p.inner + j];
        float b = p.x[r * 2 * p.inner + p.inner + j];
        store_f(p.out, p.dtype, i, __fmul_rn(__fdiv_rn(a, __fadd_rn(1.f, expf(-a))), b));
    }
}
