package dev.lathe.cpu;

import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.Random;

import static dev.lathe.cpu.Fixtures.assertClose;
import static dev.lathe.cpu.Fixtures.assertRelative;
import static dev.lathe.cpu.Fixtures.nans;
import static dev.lathe.cpu.Fixtures.normals;
import static dev.lathe.cpu.Fixtures.weight;
import static dev.lathe.cpu.Fixtures.weightValues;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Each op against a plain scalar oracle in double precision, at odd sizes, outputs poisoned with NaN. */
class CpuOpsTest {
    private static final CpuBackend backend = new CpuBackend(3);

    @AfterAll
    static void closeBackend() { backend.close(); }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void linearMatchesOracleForEveryFormatAndTokenCount(DType dtype) {
        Random rnd = Fixtures.random("linear " + dtype);
        for (int n : new int[]{1, 3, 4, 5, 9}) {
            for (int in : new int[]{67, 130, 256}) {
                int out = 37;
                float[] x = normals(rnd, n * in);
                float[] w = weightValues(rnd, dtype, out * in);
                float[] b = weightValues(rnd, dtype, out);
                for (boolean withBias : new boolean[]{false, true}) {
                    try (Weight wt = backend.load(Fixtures.misaligned("w", dtype, w, 1 + rnd.nextInt(3), out, in));
                         Weight bt = backend.load(weight("b", dtype, b, out));
                         Tensor xt = backend.upload(x, n, in);
                         Tensor ot = backend.upload(nans(n * out), n, out)) {
                        backend.linear(xt, wt, withBias ? bt : null, ot);
                        assertLinear(dtype + " n=" + n + " in=" + in + " bias=" + withBias,
                                backend.download(ot), x, w, withBias ? b : null, n, in, out);
                    }
                }
            }
        }
    }

    /**
     * Tolerance for a float32 dot product of {@code in} terms: a sum accumulated in float32 is off by
     * at most (in - 1) * 2^-24 * sum|terms| (each partial sum rounds once); with in <= 256 that is under
     * 1.6e-5 * sum|terms|, so 2e-5 * sum|terms| is a bound, not a guess. Weights are exact in their format.
     */
    static void assertLinear(String what, float[] got, float[] x, float[] w, float[] b, int n, int in, int out) {
        double[] want = new double[n * out], tol = new double[n * out];
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < out; r++) {
                double s = b == null ? 0 : b[r], mag = Math.abs(s);
                for (int k = 0; k < in; k++) {
                    s += (double) x[i * in + k] * w[r * in + k];
                    mag += Math.abs((double) x[i * in + k] * w[r * in + k]);
                }
                want[i * out + r] = s;
                tol[i * out + r] = 2e-5 * mag + 1e-30;
            }
        }
        assertClose(what, got, want, tol);
    }

    @Test
    void largeLinearSplitOverThreadsAndTilesMatchesOracle() {
        Random rnd = Fixtures.random("large linear");
        int n = 7, in = 200, out = 1500; // enough rows for several threads and several 256 KiB tiles
        float[] x = normals(rnd, n * in);
        float[] w = weightValues(rnd, DType.BF16, out * in);
        try (Weight wt = backend.load(weight("w", DType.BF16, w, out, in));
             Tensor xt = backend.upload(x, n, in);
             Tensor ot = backend.upload(nans(n * out), n, out)) {
            backend.linear(xt, wt, null, ot);
            assertLinear("large", backend.download(ot), x, w, null, n, in, out);
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void embeddingCopiesTheRowsOfTheIds(DType dtype) {
        Random rnd = Fixtures.random("embedding " + dtype);
        int vocab = 29, h = 67;
        float[] table = weightValues(rnd, dtype, vocab * h);
        int[] ids = {3, 0, 28, 3, 17};
        try (Weight wt = backend.load(weight("embed", dtype, table, vocab, h));
             Tensor it = backend.upload(ids, 1, ids.length);
             Tensor ot = backend.upload(nans(ids.length * h), ids.length, h)) {
            backend.embedding(wt, it, ot);
            double[] want = new double[ids.length * h];
            for (int i = 0; i < ids.length; i++) {
                for (int j = 0; j < h; j++) want[i * h + j] = table[ids[i] * h + j];
            }
            assertClose("embedding", backend.download(ot), want, new double[want.length]);
        }
    }

    @Test
    void embeddingRejectsIdOutsideTheTable() {
        try (Weight wt = backend.load(weight("embed", DType.F32, new float[4 * 3], 4, 3));
             Tensor it = backend.upload(new int[]{1, 4}, 1, 2);
             Tensor ot = backend.allocate(DType.F32, 2, 3)) {
            assertThatThrownBy(() -> backend.embedding(wt, it, ot))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("token id 4").hasMessageContaining("embed");
        }
    }

    static double[] rmsNormOracle(float[] x, float[] w, float eps) {
        int d = w.length;
        double[] out = new double[x.length];
        for (int g = 0; g < x.length / d; g++) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double) x[g * d + j] * x[g * d + j];
            double inv = 1 / Math.sqrt(ss / d + eps);
            for (int j = 0; j < d; j++) out[g * d + j] = x[g * d + j] * inv * w[j];
        }
        return out;
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void rmsNormMatchesOracleOverWholeRowsAndPerHead(DType dtype) {
        Random rnd = Fixtures.random("rmsNorm " + dtype);
        float eps = 1e-6f;
        for (int[] shape : new int[][]{{3, 67, 67}, {5, 5 * 12, 12}, {600, 129, 129}}) {
            int n = shape[0], cols = shape[1], d = shape[2];
            float[] x = normals(rnd, n * cols);
            float[] w = weightValues(rnd, dtype, d);
            try (Weight wt = backend.load(weight("norm", dtype, w, d));
                 Tensor xt = backend.upload(x, n, cols);
                 Tensor ot = backend.upload(nans(n * cols), n, cols)) {
                backend.rmsNorm(xt, wt, eps, ot);
                assertRelative("rmsNorm " + n + "x" + cols + "/" + d, backend.download(ot), rmsNormOracle(x, w, eps));
                backend.rmsNorm(xt, wt, eps, xt); // in place
                assertRelative("rmsNorm in place", backend.download(xt), rmsNormOracle(x, w, eps));
            }
        }
    }

    @Test
    void rmsNormUsesEpsInsideTheSquareRoot() {
        float[] x = {1e-3f, -1e-3f, 2e-3f};
        float eps = 1e-2f; // dominates mean(x^2) = 2e-6, so a misplaced eps shows
        try (Weight wt = backend.load(weight("norm", DType.F32, new float[]{1, 1, 1}, 3));
             Tensor xt = backend.upload(x, 1, 3);
             Tensor ot = backend.upload(nans(3), 1, 3)) {
            backend.rmsNorm(xt, wt, eps, ot);
            assertRelative("rmsNorm eps", backend.download(ot), rmsNormOracle(x, new float[]{1, 1, 1}, eps));
        }
    }

    @Test
    void addRmsNormUpdatesResidualAndNormsTheSum() {
        Random rnd = Fixtures.random("addRmsNorm");
        int n = 3, h = 67;
        float eps = 1e-5f;
        float[] r = normals(rnd, n * h), x = normals(rnd, n * h);
        float[] w = weightValues(rnd, DType.BF16, h);
        try (Weight wt = backend.load(weight("norm", DType.BF16, w, h));
             Tensor rt = backend.upload(r, n, h);
             Tensor xt = backend.upload(x, n, h);
             Tensor ot = backend.upload(nans(n * h), n, h)) {
            backend.addRmsNorm(rt, xt, wt, eps, ot);
            float[] sum = new float[n * h];
            double[] wantSum = new double[n * h];
            for (int i = 0; i < sum.length; i++) {
                sum[i] = r[i] + x[i];
                wantSum[i] = (double) r[i] + x[i];
            }
            assertRelative("residual", backend.download(rt), wantSum);
            assertRelative("addRmsNorm", backend.download(ot), rmsNormOracle(sum, w, eps));
        }
    }

    @Test
    void ropeRotatesEachHeadsHalvesLikeHf() {
        Random rnd = Fixtures.random("rope");
        int n = 3, heads = 5, half = 6, cols = heads * 2 * half;
        float[] x = normals(rnd, n * cols), cos = new float[n * half], sin = new float[n * half];
        for (int i = 0; i < cos.length; i++) {
            double angle = rnd.nextDouble() * 20;
            cos[i] = (float) Math.cos(angle);
            sin[i] = (float) Math.sin(angle);
        }
        double[] want = new double[x.length];
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < heads; h++) {
                int base = t * cols + h * 2 * half;
                for (int j = 0; j < half; j++) {
                    double c = cos[t * half + j], s = sin[t * half + j];
                    want[base + j] = x[base + j] * c - x[base + j + half] * s;
                    want[base + j + half] = x[base + j + half] * c + x[base + j] * s;
                }
            }
        }
        try (Tensor xt = backend.upload(x, n, cols);
             Tensor ct = backend.upload(cos, n, half);
             Tensor st = backend.upload(sin, n, half)) {
            backend.rope(xt, ct, st);
            assertRelative("rope", backend.download(xt), want);
        }
    }

    @Test
    void siluMulGatesTheSecondHalfWithSiluOfTheFirst() {
        Random rnd = Fixtures.random("siluMul");
        int n = 3, inner = 67;
        float[] x = normals(rnd, n * 2 * inner);
        for (int i = 0; i < x.length; i += 7) x[i] *= 8; // reach both tails of the sigmoid
        double[] want = new double[n * inner];
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < inner; j++) {
                double a = x[t * 2 * inner + j];
                want[t * inner + j] = a / (1 + Math.exp(-a)) * x[t * 2 * inner + inner + j];
            }
        }
        try (Tensor xt = backend.upload(x, n, 2 * inner);
             Tensor ot = backend.upload(nans(n * inner), n, inner)) {
            backend.siluMul(xt, ot);
            assertRelative("siluMul", backend.download(ot), want);
        }
    }

    @Test
    void splitColumnsCopiesConsecutiveColumnRanges() {
        Random rnd = Fixtures.random("splitColumns");
        int n = 3, a = 12, b = 5, c = 7;
        float[] src = normals(rnd, n * (a + b + c));
        try (Tensor st = backend.upload(src, n, a + b + c);
             Tensor at = backend.upload(nans(n * a), n, a);
             Tensor bt = backend.upload(nans(n * b), n, b);
             Tensor ct = backend.upload(nans(n * c), n, c)) {
            backend.splitColumns(st, at, bt, ct);
            int off = 0;
            for (var part : new Object[][]{{at, a}, {bt, b}, {ct, c}}) {
                int width = (int) part[1];
                double[] want = new double[n * width];
                for (int t = 0; t < n; t++) {
                    for (int j = 0; j < width; j++) want[t * width + j] = src[t * (a + b + c) + off + j];
                }
                assertClose("part at column " + off, backend.download((Tensor) part[0]), want, new double[want.length]);
                off += width;
            }
        }
    }

    @Test
    void gatherRowsPicksRowsInTheGivenOrder() {
        Random rnd = Fixtures.random("gatherRows");
        int n = 5, cols = 67;
        float[] x = normals(rnd, n * cols);
        int[] rows = {4, 0, 4};
        try (Tensor xt = backend.upload(x, n, cols);
             Tensor rt = backend.upload(rows, 1, rows.length);
             Tensor ot = backend.upload(nans(rows.length * cols), rows.length, cols)) {
            backend.gatherRows(xt, rt, ot);
            double[] want = new double[rows.length * cols];
            for (int i = 0; i < rows.length; i++) {
                for (int j = 0; j < cols; j++) want[i * cols + j] = x[rows[i] * cols + j];
            }
            assertClose("gatherRows", backend.download(ot), want, new double[want.length]);
        }
    }

    @Test
    void shapeMismatchNamesTheOpAndTheShapes() {
        try (Weight wt = backend.load(weight("model.w", DType.F32, new float[6 * 4], 6, 4));
             Tensor xt = backend.allocate(DType.F32, 2, 5);
             Tensor ot = backend.allocate(DType.F32, 2, 6)) {
            assertThatThrownBy(() -> backend.linear(xt, wt, null, ot))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("linear").hasMessageContaining("[2, 5]").hasMessageContaining("[6, 4]")
                    .hasMessageContaining("model.w");
        }
        try (Tensor xt = backend.allocate(DType.F32, 2, 10);
             Tensor ot = backend.allocate(DType.F32, 2, 4)) {
            assertThatThrownBy(() -> backend.siluMul(xt, ot))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("siluMul").hasMessageContaining("[2, 10]");
        }
        try (Tensor xt = backend.allocate(DType.F32, 2, 10);
             Tensor at = backend.allocate(DType.F32, 2, 4);
             Tensor bt = backend.allocate(DType.F32, 2, 5)) {
            assertThatThrownBy(() -> backend.splitColumns(xt, at, bt))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("splitColumns");
        }
    }

    /** The fused ops' default forms, which this backend runs: the ops they stand for, and clear shape errors. */
    @Test
    void fusedOpsEqualTheOpsTheyReplaceAndRejectBadShapes() {
        Random rnd = Fixtures.random("fused");
        int n = 3, in = 40, inner = 9;
        float[] x = normals(rnd, n * in), w = weightValues(rnd, DType.BF16, 2 * inner * in), b = weightValues(rnd, DType.BF16, 2 * inner);
        try (Weight wt = backend.load(weight("mlp.gate_up", DType.BF16, w, 2 * inner, in));
             Weight bt = backend.load(weight("mlp.gate_up.bias", DType.BF16, b, 2 * inner));
             Tensor xt = backend.upload(x, n, in); Tensor gateUp = backend.upload(nans(n * 2 * inner), n, 2 * inner);
             Tensor fused = backend.upload(nans(n * inner), n, inner); Tensor apart = backend.upload(nans(n * inner), n, inner);
             Tensor narrow = backend.allocate(DType.F32, n, inner + 1)) {
            backend.linearSiluMul(xt, wt, bt, fused);
            backend.linear(xt, wt, bt, gateUp);
            backend.siluMul(gateUp, apart);
            assertThat(backend.download(fused)).containsExactly(backend.download(apart));
            assertThatThrownBy(() -> backend.linearSiluMul(xt, wt, bt, narrow))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("linearSiluMul")
                    .hasMessageContaining("[18, 40]").hasMessageContaining("[3, 10]");
            // the MLP: linearSiluMul then the down projection
            float[] d = weightValues(rnd, DType.BF16, 5 * inner);
            try (Weight down = backend.load(weight("mlp.down", DType.BF16, d, 5, inner));
                 Weight wrongDown = backend.load(weight("mlp.down", DType.BF16, weightValues(rnd, DType.BF16, 5 * 8), 5, 8));
                 Tensor mlpOut = backend.upload(nans(n * 5), n, 5); Tensor downOut = backend.upload(nans(n * 5), n, 5)) {
                backend.mlp(xt, wt, bt, down, null, mlpOut);
                backend.linear(apart, down, null, downOut);
                assertThat(backend.download(mlpOut)).containsExactly(backend.download(downOut));
                assertThatThrownBy(() -> backend.mlp(xt, wt, bt, wrongDown, null, mlpOut))
                        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("mlp").hasMessageContaining("[5, 8]");
            }
        }
        int heads = 4, kvHeads = 2, half = 4, headDim = 2 * half, qWidth = heads * headDim, kvWidth = kvHeads * headDim;
        float[] qkv = normals(rnd, n * (qWidth + 2 * kvWidth)), cos = new float[n * half], sin = new float[n * half];
        for (int i = 0; i < cos.length; i++) {
            double angle = rnd.nextDouble() * 20;
            cos[i] = (float) Math.cos(angle);
            sin[i] = (float) Math.sin(angle);
        }
        try (var cache = backend.allocateKvCache(1, 2, 4, kvHeads, headDim, DType.F32);
             Tensor x2 = backend.upload(qkv, n, qWidth + 2 * kvWidth); Tensor ct = backend.upload(cos, n, half);
             Tensor st = backend.upload(sin, n, half); Tensor slots = backend.upload(new int[]{5, -1, 2}, 1, n);
             Tensor q = backend.upload(nans(n * qWidth), n, qWidth); Tensor qApart = backend.upload(nans(n * qWidth), n, qWidth);
             Tensor k = backend.allocate(DType.F32, n, kvWidth); Tensor v = backend.allocate(DType.F32, n, kvWidth);
             Tensor oddQ = backend.allocate(DType.F32, n, qWidth + 1)) {
            backend.ropeWriteKv(x2, q, ct, st, cache, 0, slots);
            backend.splitColumns(x2, qApart, k, v);
            backend.rope(qApart, ct, st);
            assertThat(backend.download(q)).containsExactly(backend.download(qApart));
            assertThatThrownBy(() -> backend.ropeWriteKv(x2, oddQ, ct, st, cache, 0, slots))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("ropeWriteKv")
                    .hasMessageContaining("[3, 64]").hasMessageContaining("[3, 33]");
        }
    }

    @Test
    void downloadReturnsACopy() {
        try (Tensor t = backend.upload(new float[]{1, 2, 3}, 1, 3)) {
            backend.download(t)[0] = 42;
            assertThat(backend.download(t)).containsExactly(1, 2, 3);
        }
    }

    @Test
    void unsupportedWeightDtypeIsRejectedWithTheTensorName() {
        var t = new dev.lathe.core.checkpoint.WeightTensor("model.q.weight", DType.I8, new long[]{2, 2},
                java.lang.foreign.Arena.ofAuto().allocate(4));
        assertThatThrownBy(() -> backend.load(t)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("model.q.weight").hasMessageContaining("I8");
    }
}
