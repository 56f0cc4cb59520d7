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
