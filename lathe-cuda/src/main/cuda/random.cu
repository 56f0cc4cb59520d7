// Seeded random weights: an exact port of dev.lathe.core.backend.SeededRandom, so the CPU and CUDA
// backends build the same synthetic model. Rounded arithmetic is spelled out (__dmul_rn, __fmul_rn)
// so the compiler cannot fuse it into FMAs that Java does not do.
#include "common.cuh"
using namespace lathe;

struct RandomParams {
    void* out;                 // [count] in `dtype`
    unsigned long long seed;
    long long count;
    float mean;
    float std;
    int dtype;
};

// SplitMix64 finaliser of seed and index; Java's wrapping long arithmetic is uint64 arithmetic here.
__device__ __forceinline__ unsigned long long seeded_bits(unsigned long long seed, unsigned long long index) {
    unsigned long long z = seed * 0x9E3779B97F4A7C15ull + index * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Box-Muller over two uniforms taken from one counter value, computed in double like the Java code.
__device__ __forceinline__ float seeded_normal(unsigned long long seed, unsigned long long index) {
    unsigned long long b = seeded_bits(seed, index);
    float u1 = __fmul_rn((float)(((b >> 40) & 0xFFFFFFull) + 1), 0x1.0p-24f);
    float u2 = __fmul_rn((float)((b >> 16) & 0xFFFFFFull), 0x1.0p-24f);
    const double two_pi = 2.0 * 3.141592653589793;
    double r = sqrt(__dmul_rn(-2.0, log((double)u1)));
    double c = cos(__dmul_rn(two_pi, (double)u2));
    return (float)__dmul_rn(r, c);
}

// value i = mean + std * normal(seed, i), rounded to the storage format.
extern "C" __global__ void random_normal(const RandomParams p) {
    LATHE_PDL_WAIT();
    for (long long i = global_index(); i < p.count; i += global_stride()) {
        float v = __fadd_rn(p.mean, __fmul_rn(p.std, seeded_normal(p.seed, (unsigned long long)i)));
        store_f(p.out, p.dtype, i, v);
    }
}
