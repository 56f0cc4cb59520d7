// Paged attention, causal, with grouped query heads; one kernel for prefill and decode.
//
// Correct first: one block of ATTN_WARPS warps per (query row, head). Warp w takes keys
// first+w, first+w+ATTN_WARPS, ... and keeps an online softmax (running max m, running sum l, weighted
// value sum acc); the warps' partial states are merged at the end. Lane i holds dimensions
// i, i+32, ... of q and acc, so head_dim may be any value up to ATTN_MAX_HEAD_DIM.
// Prefill with a 16-bit cache runs on tensor cores in flash_attention.cu instead (CudaBackend picks);
// split_attention.cu serves the other steps for head sizes that are multiples of 32; this kernel takes the
// remaining head sizes.
#include "common.cuh"
using namespace lathe;

#define ATTN_WARPS 4
#define ATTN_MAX_HEAD_DIM 256
#define ATTN_PER_LANE (ATTN_MAX_HEAD_DIM / 32)

struct AttentionParams {
    const float* q;             // [num_tokens, num_heads * head_dim]
    const void* k_cache;        // this layer: [blocks, block_size, num_kv_heads, head_dim] in `dtype`
    const void* v_cache;        // same layout
    void* out;                  // [num_tokens, num_heads * head_dim] in `out_dtype`
    const int* query_starts;    // [num_seqs + 1]
    const int* context_lens;    // [num_seqs]
    const int* block_tables;    // [num_seqs, max_blocks_per_seq]
    int num_seqs;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int block_size;
    int max_blocks_per_seq;
    int sliding_window;         // > 0: attend to the last sliding_window positions only
    int dtype;
    int out_dtype;              // F32, or the 16-bit format the next GEMM takes
    float scale;
};

extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32) paged_attention(const AttentionParams p) {
    LATHE_PDL_WAIT();
    const int row = blockIdx.x, head = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    const RowPlace place = place_of_row(p.query_starts, p.context_lens, p.num_seqs, row);
    const int seq = place.seq, pos = place.pos;
    const int first = p.sliding_window > 0 ? max(0, pos - p.sliding_window + 1) : 0;
    const int kv_head = head / (p.num_heads / p.num_kv_heads);
    const int* table = p.block_tables + (long long)seq * p.max_blocks_per_seq;

    const float* qrow = p.q + ((long long)row * p.num_heads + head) * p.head_dim;
    float qv[ATTN_PER_LANE], acc[ATTN_PER_LANE];
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        int d = lane + 32 * i;
        qv[i] = d < p.head_dim ? qrow[d] : 0.f;
        acc[i] = 0.f;
    }

    float m = -INFINITY, l = 0.f;
    for (int t = first + warp; t <= pos; t += ATTN_WARPS) {
        long long slot = (long long)table[t / p.block_size] * p.block_size + t % p.block_size;
        long long off = (slot * p.num_kv_heads + kv_head) * p.head_dim;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < ATTN_PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < p.head_dim) s += qv[i] * load_f(p.k_cache, p.dtype, off + d);
        }
        s = warp_sum(s) * p.scale;
        float m_new = fmaxf(m, s);
        float correction = expf(m - m_new);  // 0 on the first key (m = -inf)
        float e = expf(s - m_new);
        l = l * correction + e;
#pragma unroll
        for (int i = 0; i < ATTN_PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < p.head_dim) acc[i] = acc[i] * correction + e * load_f(p.v_cache, p.dtype, off + d);
        }
        m = m_new;
    }

    // merge the warps' (m, l, acc); a warp that saw no key has m = -inf and contributes nothing
    __shared__ float sm_m[ATTN_WARPS], sm_l[ATTN_WARPS];
    __shared__ float sm_acc[ATTN_WARPS][ATTN_MAX_HEAD_DIM];
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATTN_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < p.head_dim) sm_acc[warp][d] = acc[i];
    }
    __syncthreads();
    float gm = -INFINITY;
    for (int w = 0; w < ATTN_WARPS; w++) gm = fmaxf(gm, sm_m[w]);
    float gl = 0.f, weight[ATTN_WARPS];
    for (int w = 0; w < ATTN_WARPS; w++) {
        weight[w] = sm_m[w] == -INFINITY ? 0.f : expf(sm_m[w] - gm);
        gl += sm_l[w] * weight[w];
    }
    float inv = 1.f / gl;
    const long long orow = ((long long)row * p.num_heads + head) * p.head_dim;
    for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
        float a = 0.f;
        for (int w = 0; w < ATTN_WARPS; w++) a += weight[w] == 0.f ? 0.f : sm_acc[w][d] * weight[w];
        store_f(p.out, p.out_dtype, orow + d, a * inv);
    }
}
