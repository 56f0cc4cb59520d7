// Row movement: embedding lookup, row gather, column split.
#include "common.cuh"
using namespace lathe;

struct EmbeddingParams {
    const int* ids;     // [n]
    const void* table;  // [vocab, hidden] in `dtype`
    void* out;          // [n, hidden] in `out_dtype`: F32, or the table's own 16-bit format (its values as they are)
    int n;
    int hidden;
    int vocab;
    int dtype;
    int out_dtype;
};

// One block per token. An id outside [0, vocab) yields a row of NaN (the host cannot check ids that
// live on the device without a synchronisation).
extern "C" __global__ void embedding(const EmbeddingParams p) {
    LATHE_PDL_WAIT();
    int row = blockIdx.x;
    int id = p.ids[row];
    bool ok = id >= 0 && id < p.vocab;
    long long base = (long long)row * p.hidden;
    for (int j = threadIdx.x; j < p.hidden; j += blockDim.x) {
        store_f(p.out, p.out_dtype, base + j, ok ? load_f(p.table, p.dtype, (long long)id * p.hidden + j) : nan_f());
    }
}

struct GatherRowsParams {
    const void* x;    // [x_rows, cols] in `x_dtype`
    const int* rows;  // [m]
    float* out;       // [m, cols]: x's values, widened to float32
    int m;
    int cols;
    int x_rows;
    int x_dtype;      // F32 or a 16-bit format
};

// One block per output row; an index outside x yields a row of NaN.
extern "C" __global__ void gather_rows(const GatherRowsParams p) {
    LATHE_PDL_WAIT();
    int i = blockIdx.x;
    int r = p.rows[i];
    bool ok = r >= 0 && r < p.x_rows;
    float* out = p.out + (long long)i * p.cols;
    for (int j = threadIdx.x; j < p.cols; j += blockDim.x) {
        out[j] = ok ? load_f(p.x, p.x_dtype, (long long)r * p.cols + j) : nan_f();
    }
}

struct SplitColumnsParams {
    const float* src;  // [rows, src_cols]
    float* dst;        // [rows, dst_cols]
    long long rows;
    int src_cols;
    int col_offset;    // first column of src that lands in dst
    int dst_cols;
};

// dst[r, j] = src[r, col_offset + j]; one launch per output.
extern "C" __global__ void split_columns(const SplitColumnsParams p) {
    LATHE_PDL_WAIT();
    long long total = p.rows * p.dst_cols;
    for (long long i = global_index(); i < total; i += global_stride()) {
        long long r = i / p.dst_cols;
        int j = (int)(i - r * p.dst_cols);
        p.dst[i] = p.src[r * p.src_cols + p.col_offset + j];
    }
}

struct ForwardTokensParams {
    const int* tokens;  // the previous step's picks
    const int* pairs;   // [2 * n]: source rows, then destination rows
    int* ids;           // this step's token ids
    int n;
};

// ids[pairs[n + i]] = tokens[pairs[i]]: a step's input tokens taken from the previous step's picks on the device.
// A negative pick (a row that held a NaN) becomes token 0; the engine ends that sequence when it reads the pick.
extern "C" __global__ void forward_tokens(const ForwardTokensParams p) {
    LATHE_PDL_WAIT();
    for (long long i = global_index(); i < p.n; i += global_stride()) {
        p.ids[p.pairs[p.n + i]] = max(0, p.tokens[p.pairs[i]]);
    }
}
