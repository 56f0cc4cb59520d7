// Rotary position embedding, HF "rotate half" convention.
#include "common.cuh"
using namespace lathe;

struct RopeParams {
    float* x;           // [n, heads * 2 * half], rotated in place
    const float* cos;   // [n, half]
    const float* sin;   // [n, half]
    long long n;
    int heads;
    int half;
};

// One thread per (token, head, j): element j of a head pairs with element j + half.
extern "C" __global__ void rope(const RopeParams p) {
    LATHE_PDL_WAIT();
    long long total = p.n * p.heads * p.half;
    for (long long i = global_index(); i < total; i += global_stride()) {
        int j = (int)(i % p.half);
        long long rh = i / p.half;
        int h = (int)(rh % p.heads);
        long long r = rh / p.heads;
        float c = p.cos[r * p.half + j], s = p.sin[r * p.half + j];
        float* head = p.x + (r * p.heads + h) * 2 * p.half;
        float x1 = head[j], x2 = head[j + p.half];
        head[j] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        head[j + p.half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
}
