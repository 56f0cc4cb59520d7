// Writes this step's keys and values into the paged KV cache.
#include "common.cuh"
using namespace lathe;

struct WriteKvParams {
    const float* k;       // [n, width]
    const float* v;       // [n, width]
    void* k_cache;        // this layer's keys   [num_slots, width] = [blocks, block_size, kv_heads, head_dim]
    void* v_cache;        // this layer's values, same layout
    const int* slots;     // [n]
    long long num_slots;  // blocks * block_size
    int n;
    int width;            // kv_heads * head_dim
    int dtype;            // cache storage format
};

// One thread per (token, element). A slot outside [0, num_slots) (e.g. -1 padding) is skipped.
extern "C" __global__ void write_kv(const WriteKvParams p) {
    LATHE_PDL_WAIT();
    long long total = (long long)p.n * p.width;
    for (long long i = global_index(); i < total; i += global_stride()) {
        long long t = i / p.width;
        int j = (int)(i - t * p.width);
        long long slot = p.slots[t];
        if (slot < 0 || slot >= p.num_slots) continue;
        store_f(p.k_cache, p.dtype, slot * p.width + j, p.k[i]);
        store_f(p.v_cache, p.dtype, slot * p.width + j, p.v[i]);
    }
}

struct RopeWriteKvParams {
    const void* qkv;      // [n, (heads + 2 * kv_heads) * 2 * half] in `qkv_dtype`: q heads, then k heads, then v heads
    float* q;             // [n, heads * 2 * half]: the rotated queries; null: keys and values only (the attention
                          // kernel rotates the queries as it loads them), and the grid covers the K/V heads only
    void* k_cache;        // this layer's keys   [num_slots, kv_heads * 2 * half]
    void* v_cache;        // this layer's values, same layout
    const float* cos;     // [n, half]
    const float* sin;     // [n, half]
    const int* slots;     // [n]
    long long num_slots;  // blocks * block_size
    long long n;
    int heads;
    int kv_heads;
    int half;
    int dtype;            // cache storage format
    int qkv_dtype;        // F32, or a 16-bit format (CudaBackend.projectionFormat)
    int vec;              // element pairs a thread: 4 (half a multiple of 4, every pointer 16-byte aligned) or 1
};

// splitColumns + rope(q) + rope(k) + write_kv in one pass. Grid (n, ceil((heads + 2 * kv_heads) * half / V /
// blockDim)): block (r, y) takes token r, and its thread t the group g = y * blockDim + t of V element pairs of that
// token: head g / (half / V), elements j .. j + V - 1 and j + half .. j + half + V - 1 with j = V * (g % (half / V)).
// V is p.vec: 4 where half is a multiple of 4 and the pointers are 16-byte aligned (one 16-byte or 8-byte access for
// each run of four), else 1; the host sizes the grid by it. Neighbouring
// threads read and write neighbouring elements. The rotation is the same arithmetic as rope(), so the cache and q
// hold the same values as the unfused ops. A slot outside [0, num_slots) writes no K/V (q is still written).
template <int V>
__device__ __forceinline__ void load_v(const void* base, int dtype, long long i, float* x) {
    if constexpr (V == 4) {
        const float4 v = load4_f(base, dtype, i);
        x[0] = v.x; x[1] = v.y; x[2] = v.z; x[3] = v.w;
    } else {
        x[0] = load_f(base, dtype, i);
    }
}

template <int V>
__device__ __forceinline__ void store_v(void* base, int dtype, long long i, const float* x) {
    if constexpr (V == 4) {
        store4_f(base, dtype, i, make_float4(x[0], x[1], x[2], x[3]));
    } else {
        store_f(base, dtype, i, x[0]);
    }
}

template <int V>
__device__ __forceinline__ void rope_write_kv_v(const RopeWriteKvParams& p) {
    const int all_heads = p.heads + 2 * p.kv_heads;
    const int groups = p.half / V;  // groups of V pairs a head
    const int g = (p.q != nullptr ? 0 : p.heads * groups) + blockIdx.y * blockDim.x + threadIdx.x;
    if (g >= all_heads * groups) return;
    const bool pow2 = (groups & (groups - 1)) == 0;
    const int h = pow2 ? g >> (__ffs(groups) - 1) : g / groups;
    const int j = (g - h * groups) * V;
    const long long r = blockIdx.x;
    const int head_dim = 2 * p.half;
    const long long src = (r * all_heads + h) * head_dim;
    float x1[V], x2[V];
    load_v<V>(p.qkv, p.qkv_dtype, src + j, x1);
    load_v<V>(p.qkv, p.qkv_dtype, src + j + p.half, x2);
    if (h < p.heads + p.kv_heads) {
        float c[V], s[V];
        load_v<V>(p.cos, DT_F32, r * p.half + j, c);
        load_v<V>(p.sin, DT_F32, r * p.half + j, s);
#pragma unroll
        for (int e = 0; e < V; e++) {
            const float y1 = __fsub_rn(__fmul_rn(x1[e], c[e]), __fmul_rn(x2[e], s[e]));
            const float y2 = __fadd_rn(__fmul_rn(x2[e], c[e]), __fmul_rn(x1[e], s[e]));
            x1[e] = y1;
            x2[e] = y2;
        }
        if (h < p.heads) {
            float* dst = p.q + (r * p.heads + h) * head_dim;
            store_v<V>(dst, DT_F32, j, x1);
            store_v<V>(dst, DT_F32, j + p.half, x2);
            return;
        }
    }
    const long long slot = p.slots[r];
    if (slot < 0 || slot >= p.num_slots) return;
    const bool is_k = h < p.heads + p.kv_heads;
    const int kv_head = is_k ? h - p.heads : h - p.heads - p.kv_heads;
    const long long at = slot * p.kv_heads * head_dim + (long long)kv_head * head_dim + j;
    void* cache = is_k ? p.k_cache : p.v_cache;
    store_v<V>(cache, p.dtype, at, x1);
    store_v<V>(cache, p.dtype, at + p.half, x2);
}

extern "C" __global__ void rope_write_kv(const RopeWriteKvParams p) {
    LATHE_PDL_WAIT();
    if (p.vec == 4) {
        rope_write_kv_v<4>(p);
    } else {
        rope_write_kv_v<1>(p);
    }
}
