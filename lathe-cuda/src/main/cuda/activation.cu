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

__device__ __forceinline__ float silu_times(float a, float b) {
    return __fmul_rn(__fdiv_rn(a, __fadd_rn(1.f, expf(-a))), b);
}

// The 16-bit case with inner a multiple of 8: eight values per thread and step, 16-byte loads and stores, one
// index division per eight values. The same arithmetic per value as the general loop.
template <typename T>
__device__ __forceinline__ void silu_mul_x8(const SiluMulParams& p) {
    using P = typename Pair16<T>::type;
    const int vecs = p.inner / 8;
    const long long total = p.n * vecs;
    const T* x = static_cast<const T*>(p.x);
    for (long long v = global_index(); v < total; v += global_stride()) {
        const long long r = v / vecs;
        const int jv = (int)(v - r * vecs);
        const int4 g = reinterpret_cast<const int4*>(x + r * 2 * p.inner)[jv];
        const int4 u = reinterpret_cast<const int4*>(x + r * 2 * p.inner + p.inner)[jv];
        float a[8], b[8];
        widen8<T>(g, a);
        widen8<T>(u, b);
        int4 o;
        P* op = reinterpret_cast<P*>(&o);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float y0 = silu_times(a[2 * i], b[2 * i]), y1 = silu_times(a[2 * i + 1], b[2 * i + 1]);
            op[i] = Pair16<T>::narrow(y0, y1);
        }
        reinterpret_cast<int4*>(static_cast<T*>(p.out))[v] = o;
    }
}

// out[r, j] = silu(x[r, j]) * x[r, j + inner], computed in float32 and stored in `dtype`
extern "C" __global__ void silu_mul(const SiluMulParams p) {
    LATHE_PDL_WAIT();
    if (p.x_dtype == p.dtype && p.inner % 8 == 0 && ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.out)) & 15) == 0) {
        if (p.dtype == DT_BF16) {
            silu_mul_x8<__nv_bfloat16>(p);
            return;
        }
        if (p.dtype == DT_F16) {
            silu_mul_x8<__half>(p);
            return;
        }
    }
    long long total = p.n * p.inner;
    for (long long i = global_index(); i < total; i += global_stride()) {
        long long r = i / p.inner;
        int j = (int)(i - r * p.inner);
        float a = load_f(p.x, p.x_dtype, r * 2 * p.inner + j);
        float b = load_f(p.x, p.x_dtype, r * 2 * p.inner + p.inner + j);
        store_f(p.out, p.dtype, i, silu_times(a, b));
    }
}
