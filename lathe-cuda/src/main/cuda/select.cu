// Token selection on the GPU, so that a step hands the host a few ints instead of [rows, vocab] logits.
#include <cstddef>

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

// The best of a warp's 32 values, in every lane.
__device__ __forceinline__ Best warp_best(Best b) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        Best other;
        other.v = __shfl_xor_sync(0xffffffffu, b.v, o);
        other.i = __shfl_xor_sync(0xffffffffu, b.i, o);
        other.nan = __shfl_xor_sync(0xffffffffu, (int)b.nan, o) != 0;
        b = better(b, other);
    }
    return b;
}

__device__ __forceinline__ void consider(Best& b, float v, int i) {
    if (v != v) b.nan = true;
    else if (v > b.v || (v == b.v && i < b.i)) {
        b.v = v;
        b.i = i;
    }
}

// Loads in flight per thread in argmax_rows' main loop (of four floats each where the row is 16-byte aligned).
#define ARGMAX_UNROLL 4

// One block per row. A single row (the last position of a prefill, or one decode sequence) is one block for the
// whole GPU, so the block keeps ARGMAX_UNROLL independent loads in flight per thread instead of one: a loop of
// dependent single loads waited out the memory latency about 125 times a row of 128k logits.
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS) argmax_rows(const ArgmaxParams p) {
    LATHE_PDL_WAIT();
    const float* row = p.logits + (long long)blockIdx.x * p.vocab;
    Best b{-INFINITY, 0x7fffffff, false};
    const int step = blockDim.x;
    int i = threadIdx.x;  // each thread visits its indices in increasing order, so ties keep the lowest
    if ((reinterpret_cast<uintptr_t>(row) & 15) == 0) {
        const float4* row4 = reinterpret_cast<const float4*>(row);
        const int quads = p.vocab / 4;
        int q = threadIdx.x;
        for (; q + (ARGMAX_UNROLL - 1) * step < quads; q += ARGMAX_UNROLL * step) {
            float4 v[ARGMAX_UNROLL];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; u++) v[u] = row4[q + u * step];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; u++) {
                const int at = 4 * (q + u * step);
                consider(b, v[u].x, at);
                consider(b, v[u].y, at + 1);
                consider(b, v[u].z, at + 2);
                consider(b, v[u].w, at + 3);
            }
        }
        for (; q < quads; q += step) {
            const float4 v = row4[q];
            consider(b, v.x, 4 * q);
            consider(b, v.y, 4 * q + 1);
            consider(b, v.z, 4 * q + 2);
            consider(b, v.w, 4 * q + 3);
        }
        i = 4 * quads + threadIdx.x;  // the last vocab % 4 values
    } else {
        for (; i + (ARGMAX_UNROLL - 1) * step < p.vocab; i += ARGMAX_UNROLL * step) {
            float v[ARGMAX_UNROLL];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; u++) v[u] = row[i + u * step];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; u++) consider(b, v[u], i + u * step);
        }
    }
    for (; i < p.vocab; i += step) consider(b, row[i], i);
    b = warp_best(b);
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
        Best w = warp_best(lane < warps ? Best{sv[lane], si[lane], sn[lane] != 0} : Best{-INFINITY, 0x7fffffff, false});
        // all -inf: index 0, as the host's argmax gives
        if (lane == 0) p.out[blockIdx.x] = w.nan ? -1 : (w.i == 0x7fffffff ? 0 : w.i);
    }
}

// ---- Sampled rows: Sampler.sample(row, spec) of lathe-core, on the GPU -------------------------------------
//
// One block of SAMPLE_THREADS threads per row to draw. The steps and their arithmetic follow the Java
// reference: the largest logit (a NaN anywhere, a row of -infinity or a +infinity is an error code);
// weights w = FastExp((x - max) * invT) in float operations without contraction (and without flushing
// subnormals: the build must not use -ftz or fast math), so each weight is the reference's bit for bit;
// top-k keeps logits >= the k-th largest (found by a radix select on order-preserving keys); the floor of
// top-p is the largest weight v with mass(w >= v) >= topP * total (a radix select on mass), min-p a floor
// of minP; the draw walks the kept weights in id order until their running sum exceeds u * total, u from
// SplitMix64(seed, counter) as SeededRandom.bits gives it. Sums are in double, added in another order than
// the reference's: a token can differ from the reference's only where u * total, or topP * total, falls
// within rounding of a boundary, and then it is a neighbour of the reference's choice.

#define SAMPLE_THREADS 1024

struct SampleItem {             // 40 bytes, packed by CudaBackend.packSampleItems as 10 ints
    int row;                    // the logits row
    float inv_t;                // (float) (1.0 / temperature); +inf keeps only the largest logits
    int top_k;                  // 0 = off (and off when >= vocab)
    float min_p;                // 0 = off
    double top_p;               // 1 = off
    unsigned long long seed;
    unsigned long long counter;
};
static_assert(sizeof(SampleItem) == 40 && offsetof(SampleItem, top_p) == 16 && offsetof(SampleItem, seed) == 24
              && offsetof(SampleItem, counter) == 32, "the layout CudaBackend.packSampleItems writes");

struct SampleRowsParams {
    const float* logits;        // [rows, vocab]
    const SampleItem* items;    // [count]
    float* weights;             // [count, vocab] scratch
    int* out;                   // [count]: the token, or -1 (NaN), -2 (only -infinity), -3 (+infinity)
    int vocab;
};

__device__ __forceinline__ unsigned int order_key(float x) {
    unsigned int b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float key_to_float(unsigned int k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// FastExp.expNonPositive of lathe-core, operation for operation (no fused multiply-adds).
__device__ __forceinline__ float fast_exp_np(float x) {
    const float LOG2E = 1.44269504f, LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f, ROUND = 12582912.f;
    float xc = fmaxf(x, -100.f);
    float n = fmaxf(__fsub_rn(__fadd_rn(__fmul_rn(xc, LOG2E), ROUND), ROUND), -127.f);
    float r = __fsub_rn(__fsub_rn(xc, __fmul_rn(n, LN2_HI)), __fmul_rn(n, LN2_LO));
    float p = 1.382942079e-03f;
    p = __fadd_rn(__fmul_rn(p, r), 8.374771103e-03f);
    p = __fadd_rn(__fmul_rn(p, r), 4.166835919e-02f);
    p = __fadd_rn(__fmul_rn(p, r), 1.666642129e-01f);
    p = __fadd_rn(__fmul_rn(p, r), 4.999999106e-01f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f);
    return __fmul_rn(p, __int_as_float(((int)n + 127) << 23));
}

// SeededRandom.bits of lathe-core (SplitMix64 finaliser), in wrapping 64-bit arithmetic as Java's longs.
__device__ __forceinline__ unsigned long long seeded_bits(unsigned long long seed, unsigned long long index) {
    unsigned long long z = seed * 0x9E3779B97F4A7C15ull + index * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A block-wide reduction (op: a + b, or max), the result in every thread; any multiple of 32 threads up to
// 1024, `identity` filling the missing warps; scratch holds 33 values.
template <typename T, typename Op>
__device__ __forceinline__ T sample_block_reduce(T v, T identity, Op op, T* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        T t = lane < warps ? scratch[lane] : identity;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t = op(t, __shfl_xor_sync(0xffffffffu, t, o));
        if (lane == 0) scratch[32] = t;
    }
    __syncthreads();
    T total = scratch[32];
    __syncthreads();
    return total;
}

struct SumOp { __device__ double operator()(double a, double b) const { return a + b; } };
struct MaxOp { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

// The largest key K (of order_key(x) for the logits: COUNT; or of the float bits of the positive weights:
// mass) with count(keys >= K) >= need, or mass(keys >= K) >= need, one byte a pass from the top; counts in
// `count_hist`, masses in `mass_hist`. Returns false only when, for masses, all the keys together fall short
// in the first pass (rounding; keep everything). A range chosen in one pass whose re-summed bins fall short
// in a later one (rounding again) is kept whole: the search goes down its lowest bin.
template <bool COUNT>
__device__ bool radix_select(const float* v, int n, double need, unsigned int* key_out, unsigned int* count_hist,
                             double* mass_hist, unsigned int* s_prefix, int* s_found) {
    unsigned int prefix = 0;
    double above = 0;      // thread 0 only: the mass (or count) of the keys above the current range
    bool shortfall = false;  // thread 0 only
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 24 - 8 * pass;
        for (int b = threadIdx.x; b < 256; b += blockDim.x) {
            if (COUNT) count_hist[b] = 0;
            else mass_hist[b] = 0;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float x = v[i];
            unsigned int k;
            if (COUNT) {
                k = order_key(x);
            } else {
                if (!(x > 0.f)) continue;
                k = __float_as_uint(x);
            }
            if (pass > 0 && (k >> (shift + 8)) != prefix) continue;
            if (COUNT) atomicAdd(&count_hist[(k >> shift) & 255u], 1u);
            else atomicAdd(&mass_hist[(k >> shift) & 255u], (double)x);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int b = -1;
            if (!shortfall) {
                for (b = 255; b >= 0; b--) {
                    double h = COUNT ? (double)count_hist[b] : mass_hist[b];
                    if (above + h >= need) break;
                    above += h;
                }
            }
            if (b < 0 && pass > 0) {  // the range holds keys: take it whole, down its lowest bin
                shortfall = true;
                for (b = 0; b < 255 && !(COUNT ? count_hist[b] > 0 : mass_hist[b] > 0); b++) {}
            }
            *s_found = b >= 0;
            *s_prefix = (prefix << 8) | (unsigned int)(b < 0 ? 0 : b);
        }
        __syncthreads();
        prefix = *s_prefix;
        bool found = *s_found != 0;
        __syncthreads();
        if (!found) return false;
    }
    *key_out = prefix;
    return true;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_rows(const SampleRowsParams p) {
    LATHE_PDL_WAIT();
    __shared__ double mass_hist[256];
    __shared__ unsigned int count_hist[256];
    __shared__ double dscratch[33];
    __shared__ float fscratch[33];
    __shared__ int s_last[32];
    __shared__ unsigned int s_prefix;
    __shared__ int s_found, s_flag, s_token;
    const SampleItem it = p.items[blockIdx.x];
    const int V = p.vocab;
    const float* x = p.logits + (long long)it.row * V;
    float* w = p.weights + (long long)blockIdx.x * V;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;

    // the largest logit; NaN, -infinity only, +infinity: the reference's errors
    if (tid == 0) s_flag = 0;
    __syncthreads();
    float mx = -INFINITY;
    for (int i = tid; i < V; i += blockDim.x) {
        float v = x[i];
        if (v != v) s_flag = 1;
        else mx = fmaxf(mx, v);
    }
    mx = sample_block_reduce(mx, -INFINITY, MaxOp(), fscratch);  // its barriers also publish s_flag
    if (s_flag || mx == -INFINITY || mx == INFINITY) {
        if (tid == 0) p.out[blockIdx.x] = s_flag ? -1 : mx == -INFINITY ? -2 : -3;
        return;
    }

    // weights of the tokens that survive temperature and top-k
    const float inv_t = it.inv_t;
    const int k = it.top_k;
    if (isinf(inv_t)) {
        for (int i = tid; i < V; i += blockDim.x) w[i] = x[i] == mx ? 1.f : 0.f;
    } else {
        float kth = -INFINITY;
        if (k > 0 && k < V) {
            unsigned int key;
            radix_select<true>(x, V, (double)k, &key, count_hist, mass_hist, &s_prefix, &s_found);  // counts are exact
            kth = key_to_float(key);
        }
        for (int i = tid; i < V; i += blockDim.x) {
            float v = x[i];
            w[i] = v >= kth ? fast_exp_np(__fmul_rn(__fsub_rn(v, mx), inv_t)) : 0.f;
        }
    }
    __syncthreads();
    double local = 0;
    for (int i = tid; i < V; i += blockDim.x) local += w[i];
    const double total = sample_block_reduce(local, 0.0, SumOp(), dscratch);

    // floors: min-p, and the nucleus of top-p
    float floor = it.min_p;
    if (it.top_p < 1.0) {
        unsigned int key;
        bool found = radix_select<false>(w, V, it.top_p * total, &key, count_hist, mass_hist, &s_prefix, &s_found);
        floor = fmaxf(floor, found ? __uint_as_float(key) : 0.f);
    }

    // the draw: contiguous id ranges per thread, their kept sums scanned across the block in id order by
    // additions only; the last non-empty range starting at or below the target walks it, and when rounding
    // has the target past that range's end, gives the range's last kept token (the reference's neighbour;
    // past the end of all of them, the reference's own fallback)
    const int chunk = (V + blockDim.x - 1) / blockDim.x;
    const int lo = min(V, tid * chunk), hi = min(V, lo + chunk);
    double mine = 0;
    int last_kept = -1;
    for (int i = lo; i < hi; i++) {
        float v = w[i];
        if (v > 0.f && v >= floor) {
            mine += v;
            last_kept = i;
        }
    }
    double incl = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    double excl = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) excl = 0.0;
    if (lane == 31) dscratch[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        double sum = lane < warps ? dscratch[lane] : 0.0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            double t = __shfl_up_sync(0xffffffffu, sum, o);
            if (lane >= o) sum += t;
        }
        double before_warp = __shfl_up_sync(0xffffffffu, sum, 1);
        dscratch[lane] = lane == 0 ? 0.0 : before_warp;
        if (lane == 31) dscratch[32] = sum;
    }
    __syncthreads();
    const double before = dscratch[warp] + excl;
    const double u = (double)(seeded_bits(it.seed, it.counter) >> 11) * 0x1.0p-53;  // [0, 1)
    const double target = u * dscratch[32];
    unsigned int cand = __ballot_sync(0xffffffffu, mine > 0 && before <= target);
    if (lane == 0) s_last[warp] = cand ? warp * 32 + 31 - __clz(cand) : -1;
    __syncthreads();
    if (warp == 0) {
        int t = lane < warps ? s_last[lane] : -1;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t = max(t, __shfl_xor_sync(0xffffffffu, t, o));
        if (lane == 0) s_token = t;
    }
    __syncthreads();
    if (s_token < 0) {  // nothing kept: cannot happen (the largest logit has weight 1), but never leave out unset
        if (tid == 0) p.out[blockIdx.x] = -4;
        return;
    }
    if (tid == s_token) {
        double cum = before;
        int token = last_kept;
        for (int i = lo; i < hi; i++) {
            float v = w[i];
            if (v > 0.f && v >= floor) {
                cum += v;
                if (target < cum) {
                    token = i;
                    break;
                }
            }
        }
        p.out[blockIdx.x] = token;
    }
}
