// Token selection on the GPU, so that a step hands the host a few ints instead of [rows, vocab] logits.
#include "common.cuh"
using namespace lathe;

#define ARGMAX_THREADS 1024

struct ArgmaxParams {
    const float* logits;  // [rows, vocab]
    int* out;             // [rows]: the index of the largest value, the lowest on ties; -1 if the row holds a NaN
    int rows;
    int vocab;
};

// Orders (value, index) pairs: larger value first, then lower index. A NaN anywhere poisons the row.
struct Best {
    float v;
    int i;
    bool nan;
};

__device__ __forceinline__ Best better(Best a, Best b) {
    Best r;
    r.nan = a.nan || b.nan;
    bool take_b = b.v > a.v || (b.v == a.v && b.i < a.i);
    r.v = take_b ? b.v : a.v;
    r.i = take_b ? b.i : a.i;
    return r;
}

// One block per row.
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS) argmax_rows(const ArgmaxParams p) {
    const float* row = p.logits + (long long)blockIdx.x * p.vocab;
    Best b{-INFINITY, 0x7fffffff, false};
    for (int i = threadIdx.x; i < p.vocab; i += blockDim.x) {
        float v = row[i];
        if (v != v) b.nan = true;
        else if (v > b.v || (v == b.v && i < b.i)) {
            b.v = v;
            b.i = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        Best other;
        other.v = __shfl_xor_sync(0xffffffffu, b.v, o);
        other.i = __shfl_xor_sync(0xffffffffu, b.i, o);
        other.nan = __shfl_xor_sync(0xffffffffu, (int)b.nan, o) != 0;
        b = better(b, other);
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ int sn[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) {
        sv[warp] = b.v;
        si[warp] = b.i;
        sn[warp] = b.nan;
    }
    __syncthreads();
    if (warp == 0) {
        Best w = lane < warps ? Best{sv[lane], si[lane], sn[lane] != 0} : Best{-INFINITY, 0x7fffffff, false};
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            Best other;
            other.v = __shfl_xor_sync(0xffffffffu, w.v, o);
            other.i = __shfl_xor_sync(0xffffffffu, w.i, o);
            other.nan = __shfl_xor_sync(0xffffffffu, (int)w.nan, o) != 0;
            w = better(w, other);
        }
        // all -inf: index 0, as the host's argmax gives
        if (lane == 0) p.out[blockIdx.x] = w.nan ? -1 : (w.i == 0x7fffffff ? 0 : w.i);
    }
}
