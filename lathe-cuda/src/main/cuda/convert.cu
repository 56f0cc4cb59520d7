// Format conversion and small helpers around the cuBLASLt GEMM.
#include "common.cuh"
using namespace lathe;

struct ConvertParams {
    const float* in;  // [count] float32
    void* out;        // [count] in `dtype`
    long long count;
    int dtype;
};

// Rounds float32 activations to the weight's format before a BF16/F16 GEMM.
extern "C" __global__ void convert_from_f32(const ConvertParams p) {
    LATHE_PDL_WAIT();
    for (long long i = global_index(); i < p.count; i += global_stride()) {
        store_f(p.out, p.dtype, i, p.in[i]);
    }
}

// Splits float32 activations into two 16-bit parts, x ~ hi + lo: out[i] = round(x[i]) and
// out[count + i] = round(x[i] - round(x[i])). One GEMM over the 2n rows then carries about 16 bits of
// each activation's mantissa instead of 8 (BF16) at the cost of reading the weights once.
extern "C" __global__ void split_from_f32(const ConvertParams p) {
    LATHE_PDL_WAIT();
    for (long long i = global_index(); i < p.count; i += global_stride()) {
        float x = p.in[i];
        store_f(p.out, p.dtype, i, x);
        float hi = load_f(p.out, p.dtype, i);
        store_f(p.out, p.dtype, p.count + i, x - hi);
    }
}

struct SumHalvesParams {
    const float* in;   // [2 * rows, cols]: the products of the hi rows, then of the lo rows
    float* out;        // [rows, cols]
    const void* bias;  // [cols] in `bias_dtype`, or null
    long long rows;
    int cols;
    int bias_dtype;
};

extern "C" __global__ void sum_halves(const SumHalvesParams p) {
    LATHE_PDL_WAIT();
    long long total = p.rows * p.cols;
    for (long long i = global_index(); i < total; i += global_stride()) {
        float v = p.in[i] + p.in[total + i];
        if (p.bias != nullptr) v += load_f(p.bias, p.bias_dtype, i % p.cols);
        p.out[i] = v;
    }
}

struct BiasAddParams {
    float* out;        // [rows, cols]
    const void* bias;  // [cols] in `dtype`
    long long rows;
    int cols;
    int dtype;
};

extern "C" __global__ void bias_add(const BiasAddParams p) {
    LATHE_PDL_WAIT();
    long long total = p.rows * p.cols;
    for (long long i = global_index(); i < total; i += global_stride()) {
        p.out[i] += load_f(p.bias, p.dtype, i % p.cols);
    }
}

struct ProbeParams {
    float* out;  // [n]
    int n;
};

// out[i] = 2 i + 1: a kernel whose result the doctor can check without any library.
extern "C" __global__ void probe(const ProbeParams p) {
    LATHE_PDL_WAIT();
    for (long long i = global_index(); i < p.n; i += global_stride()) {
        p.out[i] = 2.f * (float)i + 1.f;
    }
}
