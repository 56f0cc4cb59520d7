package dev.lathe.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@code out = x @ w^T (+ bias)} with x {@code [n, in]} F32, w {@code [outFeatures, in]} in its stored
 * format, out {@code [n, outFeatures]}. Threads split the output features (weight rows).
 *
 * <p>One token (decode) is a dot product per weight row, read straight from the segment by the
 * format's kernel: the weight streams from memory once. Several tokens (prefill) walk the rows in
 * tiles: a tile is widened to float32 once into a buffer that fits in L2, then every token reads it
 * from there, four tokens by two rows at a time so that each vector load feeds more than one
 * multiply-add (6 loads per 8 FMAs).
 */
final class Linear {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Widened weight floats per tile: 256 KiB, inside a per-core L2. */
    private static final int TILE_FLOATS = 64 * 1024;
    /** Multiply-adds below which forking costs more than it saves. */
    private static final long PARALLEL_WORK = 1 << 15;

    private Linear() {}

    static void run(WorkerPool pool, float[] x, int n, CpuWeight w, float[] bias, float[] out) {
        int outFeatures = w.rows();
        long work = (long) n * w.cols() * outFeatures;
        int minChunk = work < PARALLEL_WORK ? outFeatures : 8;
        WeightFormat format = w.format();
        pool.forRange(outFeatures, minChunk, (r0, r1) -> {
            if (n == 1) {
                decode(format, x, w, bias, out, r0, r1);
            } else {
                prefill(format, x, n, w, bias, out, r0, r1);
            }
        });
    }

    private static void decode(WeightFormat f, float[] x, CpuWeight w, float[] bias, float[] out, int r0, int r1) {
        int in = w.cols();
        long rowBytes = w.rowBytes();
        for (int r = r0; r < r1; r++) {
            CpuWeight.Part p = w.partOf(r);
            float s = f.dot(p.data(), (r - p.firstRow()) * rowBytes, x, 0, in);
            out[r] = bias == null ? s : s + bias[r];
        }
    }

    private static void prefill(WeightFormat f, float[] x, int n, CpuWeight w, float[] bias, float[] out, int r0, int r1) {
        int in = w.cols(), outFeatures = w.rows();
        int tile = Math.max(2, Math.min(r1 - r0, TILE_FLOATS / in));
        float[] wt = new float[tile * in]; // rows t0..t1 of the weight, widened: [tile, in]
        float[] acc = new float[8];
        for (int t0 = r0; t0 < r1; t0 += tile) {
            int t1 = Math.min(r1, t0 + tile);
            for (int r = t0; r < t1; r++) w.row(r, wt, (r - t0) * in);
            int tok = 0;
            for (; tok + 4 <= n; tok += 4) {
                int r = t0;
                for (; r + 2 <= t1; r += 2) {
                    block4x2(wt, (r - t0) * in, x, tok * in, in, acc);
                    for (int k = 0; k < 4; k++) {
                        out[(tok + k) * outFeatures + r] = acc[k] + (bias == null ? 0f : bias[r]);
                        out[(tok + k) * outFeatures + r + 1] = acc[4 + k] + (bias == null ? 0f : bias[r + 1]);
                    }
                }
                for (; r < t1; r++) {
                    for (int k = 0; k < 4; k++) {
                        float s = VectorMath.dot(wt, (r - t0) * in, x, (tok + k) * in, in);
                        out[(tok + k) * outFeatures + r] = bias == null ? s : s + bias[r];
                    }
                }
            }
            for (; tok < n; tok++) {
                for (int r = t0; r < t1; r++) {
                    float s = VectorMath.dot(wt, (r - t0) * in, x, tok * in, in);
                    out[tok * outFeatures + r] = bias == null ? s : s + bias[r];
                }
            }
        }
    }

    /**
     * Weight rows at {@code w0} and {@code w0 + in} against the four token rows from {@code x0}:
     * {@code acc[k]} for the first row and token k, {@code acc[4 + k]} for the second.
     */
    private static void block4x2(float[] w, int w0, float[] x, int x0, int in, float[] acc) {
        int l = F.length(), w1 = w0 + in;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int i = 0;
        for (; i + l <= in; i += l) {
            FloatVector u = FloatVector.fromArray(F, w, w0 + i), v = FloatVector.fromArray(F, w, w1 + i);
            FloatVector xa = FloatVector.fromArray(F, x, x0 + i);
            a0 = u.fma(xa, a0);
            b0 = v.fma(xa, b0);
            FloatVector xb = FloatVector.fromArray(F, x, x0 + in + i);
            a1 = u.fma(xb, a1);
            b1 = v.fma(xb, b1);
            FloatVector xc = FloatVector.fromArray(F, x, x0 + 2 * in + i);
            a2 = u.fma(xc, a2);
            b2 = v.fma(xc, b2);
            FloatVector xd = FloatVector.fromArray(F, x, x0 + 3 * in + i);
            a3 = u.fma(xd, a3);
            b3 = v.fma(xd, b3);
        }
        acc[0] = VectorMath.sum(a0);
        acc[1] = VectorMath.sum(a1);
        acc[2] = VectorMath.sum(a2);
        acc[3] = VectorMath.sum(a3);
        acc[4] = VectorMath.sum(b0);
        acc[5] = VectorMath.sum(b1);
        acc[6] = VectorMath.sum(b2);
        acc[7] = VectorMath.sum(b3);
        for (; i < in; i++) {
            float u = w[w0 + i], v = w[w1 + i];
            for (int k = 0; k < 4; k++) {
                acc[k] += u * x[x0 + k * in + i];
                acc[4 + k] += v * x[x0 + k * in + i];
            }
        }
    }
}
