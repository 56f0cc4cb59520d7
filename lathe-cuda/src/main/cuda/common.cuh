// Helpers shared by every Lathe kernel.
//
// Conventions: each kernel is extern "C" and takes exactly one parameter struct by value; the Java side
// (dev.lathe.cuda.Kernels) mirrors every struct field by field, in the same order, with C alignment.
// Fields are 8-byte pointers / long longs first, then 4-byte ints and floats. Activations are float32;
// weights and KV caches are stored as F32, F16 or BF16 and widened to float32 for the math.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

// Programmatic dependent launch (CudaContext.DEPENDENT_LAUNCH_PROPERTY): every kernel begins with this, before
// its first memory access. Launched normally, it returns at once. Launched with programmatic stream
// serialization, it waits until the kernel before it on the stream has finished and its writes are visible,
// then lets the next kernel begin launching (which, in turn, waits here). Only compute capability 9.0 and
// later have the instructions; the host sets the launch attribute only on such GPUs.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define LATHE_PDL_WAIT() asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory")
#else
#define LATHE_PDL_WAIT() do { } while (0)
#endif

namespace lathe {

// Storage formats, numbered as CudaBackend's dtypeCode() numbers them.
enum : int { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };

__device__ __forceinline__ float load_f(const void* base, int dtype, long long i) {
    switch (dtype) {
        case DT_BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
        case DT_F16: return __half2float(static_cast<const __half*>(base)[i]);
        default: return static_cast<const float*>(base)[i];
    }
}

// Rounds to nearest even, as the CPU backend does.
__device__ __forceinline__ void store_f(void* base, int dtype, long long i, float v) {
    switch (dtype) {
        case DT_BF16: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v); break;
        case DT_F16: static_cast<__half*>(base)[i] = __float2half_rn(v); break;
        default: static_cast<float*>(base)[i] = v;
    }
}

__device__ __forceinline__ float nan_f() { return __int_as_float(0x7fc00000); }

// A 16-bit format's pair type (two values in 32 bits) and its widening to float2.
template <typename T> struct Pair16;
template <> struct Pair16<__nv_bfloat16> {
    using type = __nv_bfloat162;
    static __device__ __forceinline__ float2 widen(const type& h) { return __bfloat1622float2(h); }
    static __device__ __forceinline__ type narrow(float lo, float hi) { return __floats2bfloat162_rn(lo, hi); }  // .x = lo
};
template <> struct Pair16<__half> {
    using type = __half2;
    static __device__ __forceinline__ float2 widen(const type& h) { return __half22float2(h); }
    static __device__ __forceinline__ type narrow(float lo, float hi) { return __floats2half2_rn(lo, hi); }
};

// lo and hi rounded to nearest even in T, as one 32-bit word (lo in the low half)
template <typename T> __device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
    typename Pair16<T>::type v = Pair16<T>::narrow(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

// Four consecutive values from element i of base in `dtype` (i a multiple of 4, base 16-byte aligned): one 16-byte
// load for F32, one 8-byte load for a 16-bit format.
__device__ __forceinline__ float4 load4_f(const void* base, int dtype, long long i) {
    if (dtype == DT_F32) return *reinterpret_cast<const float4*>(static_cast<const float*>(base) + i);
    const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(base) + i);
    float2 a, b;
    if (dtype == DT_BF16) {
        a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
        b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    } else {
        a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
        b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
    }
    return make_float4(a.x, a.y, b.x, b.y);
}

// v stored at element i of base in `dtype` (rounded to nearest even for a 16-bit format; alignment as load4_f).
__device__ __forceinline__ void store4_f(void* base, int dtype, long long i, float4 v) {
    if (dtype == DT_F32) {
        *reinterpret_cast<float4*>(static_cast<float*>(base) + i) = v;
    } else if (dtype == DT_BF16) {
        *reinterpret_cast<uint2*>(static_cast<uint16_t*>(base) + i) =
                make_uint2(pack_pair<__nv_bfloat16>(v.x, v.y), pack_pair<__nv_bfloat16>(v.z, v.w));
    } else {
        *reinterpret_cast<uint2*>(static_cast<uint16_t*>(base) + i) = make_uint2(pack_pair<__half>(v.x, v.y), pack_pair<__half>(v.z, v.w));
    }
}

// The eight 16-bit values of one 16-byte load, widened to float.
template <typename T> __device__ __forceinline__ void widen8(const int4& raw, float* f) {
    const typename Pair16<T>::type* h = reinterpret_cast<const typename Pair16<T>::type*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 v = Pair16<T>::widen(h[i]);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Asynchronous copies (compute capability 8.0 and later), for kernels that fill shared-memory tiles.
// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the whole block, returned to every thread. blockDim.x must be a multiple of 32.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < warps ? partial[lane] : 0.f;
        t = warp_sum(t);
        if (lane == 0) partial[0] = t;
    }
    __syncthreads();
    float total = partial[0];
    __syncthreads();  // partial may be reused by a later call
    return total;
}

// Where a packed query row sits (AttentionMetadata's layout): its sequence, the last s with
// query_starts[s] <= row (so empty sequences are skipped), and the row's position in that sequence.
struct RowPlace {
    int seq;
    int pos;
};

__device__ __forceinline__ RowPlace place_of_row(const int* query_starts, const int* context_lens, int num_seqs, int row) {
    int lo = 0, hi = num_seqs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (query_starts[mid] <= row) lo = mid; else hi = mid - 1;
    }
    const int q_len = query_starts[lo + 1] - query_starts[lo];
    return RowPlace{lo, context_lens[lo] - q_len + (row - query_starts[lo])};
}

// Grid-stride loop index helpers for element-wise kernels.
__device__ __forceinline__ long long global_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long global_stride() {
    return (long long)gridDim.x * blockDim.x;
}

}  // namespace lathe
