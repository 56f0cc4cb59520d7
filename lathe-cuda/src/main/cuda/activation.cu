// Gated activations.
#include "common.cuh"
using namespace lathe;

struct SiluMulParams {
    const void* x;   // [n, 2 * inner] in `x_dtype`: gate columns, then up columns
    void* out;       // [n, inner] in `dtype`
    long long n;
    int inner;
    int dtype;       // DT_F32, or a weight format (rounded to nearest even): the down projection's GEMM input
    int x_dtype;     // DT_F32, or a 16-bit format (the gate/up GEMM wrote it so)
};

// out[r, j] = silu(x[r, j]) * x[r, j + inner], computed in float32 and stored in `dtype`
extern "C" __global__ void silu_mul(const SiluMulParams p) {
    LATHE_PDL_WAIT();
    long long total = p.n * p.inner;
    for (long long i = global_index(); i < total; i += global_stride()) {
        long long r = i / p.inner;
        int j = (int)(i - r * p.inner);
        float a = load_f(p.x, p.x_dtype, r * 2 * p.inner + j);
        float b = load_f(p.x, p.x_dtype, r * 2 * p.inner + p.inner + j);
        store_f(p.out, p.dtype, i, __fmul_rn(__fdiv_rn(a, __fadd_rn(1.f, expf(-a))), b));
    }
}
