package dev.lathe.cpu;

/**
 * {@code out = x @ w^T (+ bias)} with x {@code [n, in]} F32, w {@code [outFeatures, in]} in its stored
 * format, out {@code [n, outFeatures]}. Threads split the output features (weight rows). The weight is
 * the big operand, so each thread walks its rows in tiles that stay in cache and, inside a tile, takes
 * the tokens four at a time ({@link WeightFormat#dot4}): every weight row is read from memory once per
 * tile and from cache once per four tokens.
 */
final class Linear {
    /** Weight bytes of one tile: comfortably inside a per-core L2. */
    private static final long TILE_BYTES = 256 * 1024;
    /** Multiply-adds below which forking costs more than it saves. */
    private static final long PARALLEL_WORK = 1 << 15;

    private Linear() {}

    static void run(WorkerPool pool, float[] x, int n, CpuWeight w, float[] bias, float[] out) {
        int outFeatures = w.rows();
        long work = (long) n * w.cols() * outFeatures;
        int minChunk = work < PARALLEL_WORK ? outFeatures : 8;
        WeightFormat format = w.format();
        pool.forRange(outFeatures, minChunk, (r0, r1) -> rows(format, x, n, w, bias, out, r0, r1));
    }

    private static void rows(WeightFormat f, float[] x, int n, CpuWeight w, float[] bias, float[] out, int r0, int r1) {
        int in = w.cols();
        int outFeatures = w.rows();
        long rowBytes = w.rowBytes();
        int tile = (int) Math.max(1, Math.min(r1 - r0, TILE_BYTES / Math.max(1, rowBytes)));
        float[] acc = new float[4];
        for (int t0 = r0; t0 < r1; t0 += tile) {
            int t1 = Math.min(r1, t0 + tile);
            int tok = 0;
            for (; tok + 4 <= n; tok += 4) {
                int x0 = tok * in;
                for (int r = t0; r < t1; r++) {
                    CpuWeight.Part p = w.partOf(r);
                    f.dot4(p.data(), (r - p.firstRow()) * rowBytes, x, x0, x0 + in, x0 + 2 * in, x0 + 3 * in, in, acc);
                    float b = bias == null ? 0f : bias[r];
                    int o = tok * outFeatures + r;
                    out[o] = acc[0] + b;
                    out[o + outFeatures] = acc[1] + b;
                    out[o + 2 * outFeatures] = acc[2] + b;
                    out[o + 3 * outFeatures] = acc[3] + b;
                }
            }
            for (; tok < n; tok++) {
                int x0 = tok * in;
                for (int r = t0; r < t1; r++) {
                    CpuWeight.Part p = w.partOf(r);
                    float s = f.dot(p.data(), (r - p.firstRow()) * rowBytes, x, x0, in);
                    out[tok * outFeatures + r] = bias == null ? s : s + bias[r];
                }
            }
        }
    }
}
