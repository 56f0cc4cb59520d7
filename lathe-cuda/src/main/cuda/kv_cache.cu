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
    const float* qkv;     // [n, (heads + 2 * kv_heads) * 2 * half]: q heads, then k heads, then v heads
    float* q;             // [n, heads * 2 * half]: the rotated queries
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
};

// The loop of rope_write_kv over index type I: unsigned 32-bit where every index fits (three divisions per element
// pair cost far less than in 64 bits), else 64-bit.
template <typename I>
__device__ __forceinline__ void rope_write_kv_loop(const RopeWriteKvParams& p, I total) {
    const I all_heads = (I)(p.heads + 2 * p.kv_heads);
    const I half = (I)p.half;
    const int head_dim = 2 * p.half;
    for (I i = (I)global_index(); i < total; i += (I)global_stride()) {
        int j = (int)(i % half);
        I rh = i / half;
        int h = (int)(rh % all_heads);
        long long r = (long long)(rh / all_heads);
        const float* src = p.qkv + (r * (long long)all_heads + h) * head_dim;
        float x1 = src[j], x2 = src[j + p.half];
        if (h < p.heads + p.kv_heads) {
            float c = p.cos[r * p.half + j], s = p.sin[r * p.half + j];
            float y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
            float y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
            if (h < p.heads) {
                float* dst = p.q + (r * p.heads + h) * head_dim;
                dst[j] = y1;
                dst[j + p.half] = y2;
                continue;
            }
            x1 = y1;
            x2 = y2;
        }
        long long slot = p.slots[r];
        if (slot < 0 || slot >= p.num_slots) continue;
        bool is_k = h < p.heads + p.kv_heads;
        int kv_head = is_k ? h - p.heads : h - p.heads - p.kv_heads;
        long long at = slot * p.kv_heads * head_dim + (long long)kv_head * head_dim + j;
        void* cache = is_k ? p.k_cache : p.v_cache;
        store_f(cache, p.dtype, at, x1);
        store_f(cache, p.dtype, at + p.half, x2);
    }
}

// splitColumns + rope(q) + rope(k) + write_kv in one pass: one thread per (token, head of q, k or v, j < half),
// handling elements j and j + half. The rotation is the same arithmetic as rope(), so the cache and q hold the
// same values as the unfused ops. A slot outside [0, num_slots) writes no K/V (q is still written).
extern "C" __global__ void rope_write_kv(const RopeWriteKvParams p) {
    LATHE_PDL_WAIT();
    const long long total = p.n * (p.heads + 2 * p.kv_heads) * p.half;
    // i + stride must not wrap in 32 bits either
    if (total + global_stride() < (1LL << 32)) rope_write_kv_loop<unsigned>(p, (unsigned)total);
    else rope_write_kv_loop<long long>(p, total);
}
