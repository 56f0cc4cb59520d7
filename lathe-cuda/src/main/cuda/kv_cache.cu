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
    int qkv_dtype;        // F32, or a 16-bit format (CudaBackend.projectionFormat)
};

// splitColumns + rope(q) + rope(k) + write_kv in one pass. Grid (n, ceil((heads + 2 * kv_heads) * half / blockDim)):
// block (r, y) takes token r, and its thread t the element pair p = y * blockDim + t of that token, head p / half,
// elements j = p % half and j + half (one division a thread, a shift when half is a power of two; neighbouring
// threads read and write neighbouring elements). The rotation is the same arithmetic as rope(), so the cache and q
// hold the same values as the unfused ops. A slot outside [0, num_slots) writes no K/V (q is still written).
extern "C" __global__ void rope_write_kv(const RopeWriteKvParams p) {
    LATHE_PDL_WAIT();
    const int all_heads = p.heads + 2 * p.kv_heads;
    const int pair = blockIdx.y * blockDim.x + threadIdx.x;
    if (pair >= all_heads * p.half) return;
    const bool pow2 = (p.half & (p.half - 1)) == 0;
    const int h = pow2 ? pair >> (__ffs(p.half) - 1) : pair / p.half;
    const int j = pair - h * p.half;
    const long long r = blockIdx.x;
    const int head_dim = 2 * p.half;
    const long long src = (r * all_heads + h) * head_dim;
    float x1 = load_f(p.qkv, p.qkv_dtype, src + j), x2 = load_f(p.qkv, p.qkv_dtype, src + j + p.half);
    if (h < p.heads + p.kv_heads) {
        const float c = p.cos[r * p.half + j], s = p.sin[r * p.half + j];
        const float y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        const float y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
        if (h < p.heads) {
            float* dst = p.q + (r * p.heads + h) * head_dim;
            dst[j] = y1;
            dst[j + p.half] = y2;
            return;
        }
        x1 = y1;
        x2 = y2;
    }
    const long long slot = p.slots[r];
    if (slot < 0 || slot >= p.num_slots) return;
    const bool is_k = h < p.heads + p.kv_heads;
    const int kv_head = is_k ? h - p.heads : h - p.heads - p.kv_heads;
    const long long at = slot * p.kv_heads * head_dim + (long long)kv_head * head_dim + j;
    void* cache = is_k ? p.k_cache : p.v_cache;
    store_f(cache, p.dtype, at, x1);
    store_f(cache, p.dtype, at + p.half, x2);
}
