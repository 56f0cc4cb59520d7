package dev.lathe.cuda;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.backend.SeededRandom;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static dev.lathe.cuda.Host.assertClose;
import static dev.lathe.cuda.Host.nans;
import static dev.lathe.cuda.Host.normal;
import static dev.lathe.cuda.Host.round;
import static dev.lathe.cuda.Host.weight;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;

/**
 * Every op of the CUDA backend against a plain Java oracle, on random inputs of odd sizes, outputs
 * poisoned with NaN beforehand. Each test logs its seed; rerun one with -Dlathe.test.seed=N.
 */
@Tag("gpu")
class CudaOpsTest {
    private static CudaBackend gpu;
    private Random random;
    private long seed;

    @BeforeAll
    static void open() {
        gpu = new CudaBackend(0);
        System.out.println("GPU: " + gpu.device());
    }

    @AfterAll
    static void close() {
        if (gpu != null) gpu.close();
    }

    @BeforeEach
    void seed(TestInfo info) {
        seed = Long.getLong("lathe.test.seed", System.nanoTime());
        random = new Random(seed);
        System.out.println(info.getDisplayName() + ": seed " + seed);
    }

    private Tensor poisoned(int rows, int cols) { return gpu.upload(nans(rows * cols), rows, cols); }

    @Test
    void doctorRunsTheProbeKernelAndAGemm() {
        var text = new ByteArrayOutputStream();
        boolean ok = Doctor.report(new PrintStream(text, true));
        System.out.print(text);
        assertThat(ok).as(text.toString()).isTrue();
        assertThat(text.toString()).contains("compute capability", "test kernel: ran, results correct");
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16", "BF16"})
    void embeddingCopiesTableRowsOfIds(DType dtype) {
        int vocab = 301, hidden = 133, n = 17;
        float[] table = normal(random, vocab * hidden, 1f);
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = random.nextInt(vocab);
        ids[0] = vocab - 1;
        try (Weight w = gpu.load(weight("embed", dtype, table, vocab, hidden)); Tensor it = gpu.upload(ids, 1, n);
             Tensor out = poisoned(n, hidden)) {
            gpu.embedding(w, it, out);
            float[] want = new float[n * hidden];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < hidden; j++) want[i * hidden + j] = round(dtype, table[ids[i] * hidden + j]);
            }
            assertThat(gpu.download(out)).as("seed " + seed).containsExactly(want);
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "BF16"})
    void randomWeightsMatchSeededRandom(DType dtype) {
        int rows = 37, cols = 4099;
        long s = random.nextLong();
        float mean = 1f, std = 0.02f;
        try (Weight w = gpu.random("r", dtype, rows, cols, s, mean, std); Tensor ids = gpu.upload(iota(rows), 1, rows);
             Tensor out = poisoned(rows, cols)) {
            gpu.embedding(w, ids, out);  // reads the table back row by row
            float[] got = gpu.download(out);
            int exact = 0;
            float[] want = new float[got.length];
            for (int i = 0; i < got.length; i++) {
                want[i] = round(dtype, mean + std * SeededRandom.normal(s, i));
                if (got[i] == want[i]) exact++;
            }
            // double-precision log/cos may differ in the last bit between the JDK and CUDA: rare ties only
            assertThat(exact).as("bit-exact values of " + got.length + ", seed " + s).isGreaterThan(got.length - got.length / 1000);
            assertClose("random " + dtype + " seed " + s, got, want, 1e-6);
        }
    }

    /**
     * A long step's norm of the 16-bit residual into the 16-bit GEMM input, weight in the same format (rms_norm's
     * 16-byte path): within one unit in the last place of the float32 path's result rounded, as the sum of squares is
     * added in another order. Widths 4096 and 4104 take that path, 4100 (not a multiple of 8) the float4 one; 300 rows
     * launch the narrow blocks, 20 the wide ones.
     */
    @ParameterizedTest
    @ValueSource(ints = {4096, 4104, 4100})
    void sixteenBitRowsNormIntoSixteenBits(int d) {
        for (DType format : List.of(DType.BF16, DType.F16)) {
            for (int n : new int[]{300, 20}) {
                float[] x = normal(random, n * d, 2f), w = normal(random, d, 1f);
                try (Weight wt = gpu.load(weight("norm", format, w, d)); Tensor xf = gpu.upload(x, n, d);
                     Tensor x16 = gpu.rounded(xf, format); Tensor out16 = gpu.allocate(format, n, d); Tensor out32 = poisoned(n, d)) {
                    gpu.rmsNorm(x16, wt, 1e-5f, out16);
                    gpu.rmsNorm(x16, wt, 1e-5f, out32);
                    float[] got = gpu.download16(out16), exact = gpu.download(out32);
                    assertClose(format + " rows, float32 result, seed " + seed, exact, rmsNorm(round(format, x), round(format, w), 1e-5f), 1e-6);
                    int fraction = format == DType.BF16 ? 7 : 10;
                    for (int i = 0; i < got.length; i++) {
                        float want = round(format, exact[i]);
                        double ulp = Math.scalb(1.0, Math.getExponent(want) - fraction);
                        if (Math.abs(got[i] - want) > ulp) {
                            throw new AssertionError(format + ", width " + d + ", " + n + " rows: value " + i + " is " + got[i]
                                    + ", the float32 result rounded " + want + "; seed " + seed);
                        }
                    }
                }
            }
        }
    }

    /** Odd group widths take the kernel's two-pass loop, multiples of 4 its float4 path (4096: 2 float4s a thread). */
    @ParameterizedTest
    @ValueSource(ints = {97, 4096, 132})
    void rmsNormNormalisesEachGroup(int d) {
        int n = 5, heads = 3;
        float[] x = normal(random, n * heads * d, 2f), w = normal(random, d, 1f);
        try (Weight wt = gpu.load(weight("norm", DType.BF16, w, d)); Tensor xt = gpu.upload(x, n, heads * d);
             Tensor out = poisoned(n, heads * d); Tensor out16 = gpu.allocate(DType.BF16, n, heads * d)) {
            float[] want = rmsNorm(x, round(DType.BF16, w), 1e-5f);
            gpu.rmsNorm(xt, wt, 1e-5f, out);
            assertClose("rmsNorm seed " + seed, gpu.download(out), want, 1e-6);
            gpu.rmsNorm(xt, wt, 1e-5f, out16);  // the GEMM input format: the float32 result rounded once
            assertThat(gpu.download16(out16)).as("rmsNorm into BF16, seed %d", seed).containsExactly(round(DType.BF16, gpu.download(out)));
            gpu.rmsNorm(xt, wt, 1e-5f, xt);  // in place
            assertClose("rmsNorm in place seed " + seed, gpu.download(xt), want, 1e-6);
        }
    }

    /**
     * Long steps under lathe.norm.narrow: 128 threads a row at width 4096 (eight float4s each) and 32 at width 132,
     * the residual updated exactly, the norm within float32 rounding of the reference and its BF16 output the float32
     * one rounded once; fewer rows than CudaBackend.NORM_NARROW_MIN_ROWS keep the wide blocks.
     */
    @ParameterizedTest
    @ValueSource(ints = {4096, 132})
    void narrowNormBlocksServeLongSteps(int d) {
        int n = CudaBackend.NORM_NARROW_MIN_ROWS + 44;
        boolean old = gpu.narrowNorm(true);
        try {
            assertThat(gpu.normThreads(n, d)).isEqualTo(d == 4096 ? 128 : 32);
            assertThat(gpu.normThreads(CudaBackend.NORM_NARROW_MIN_ROWS - 1, d)).isEqualTo(d == 4096 ? 512 : 160);
            float[] r = normal(random, n * d, 1f), x = normal(random, n * d, 1f), w = normal(random, d, 1f);
            try (Weight wt = gpu.load(weight("norm", DType.BF16, w, d)); Tensor rt = gpu.upload(r, n, d);
                 Tensor xt = gpu.upload(x, n, d); Tensor out = poisoned(n, d); Tensor out16 = gpu.allocate(DType.BF16, n, d)) {
                gpu.addRmsNorm(rt, xt, wt, 1e-5f, out);
                float[] sum = new float[n * d];
                for (int i = 0; i < sum.length; i++) sum[i] = r[i] + x[i];
                // Arrays.mismatch: AssertJ's containsExactly diffs the arrays as lists first, minutes over a million floats
                assertThat(Arrays.mismatch(gpu.download(rt), sum)).as("residual, seed %d: first differing element", seed).isEqualTo(-1);
                assertClose("narrow addRmsNorm seed " + seed, gpu.download(out), rmsNorm(sum, round(DType.BF16, w), 1e-5f), 1e-6);
                gpu.rmsNorm(rt, wt, 1e-5f, out16);
                gpu.rmsNorm(rt, wt, 1e-5f, out);
                assertThat(Arrays.mismatch(gpu.download16(out16), round(DType.BF16, gpu.download(out))))
                        .as("narrow rmsNorm into BF16, seed %d: first differing element", seed).isEqualTo(-1);
            }
        } finally {
            gpu.narrowNorm(old);
        }
    }

    /**
     * A norm writing BF16 or F16 (lathe.norm.fused) stores exactly its float32 result rounded to nearest even, and
     * the GEMM takes such a tensor as it is: D in float32 and in the weight format agree to the format's precision.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void normsWriteTheWeightFormatAndGemmsTakeIt(DType format) {
        int n = 100, h = 512, outF = 300;
        float[] r = normal(random, n * h, 1f), x = normal(random, n * h, 1f), g = normal(random, h, 1f);
        float[] w = normal(random, outF * h, 0.05f);
        try (Weight gt = gpu.load(weight("norm", format, g, h)); Weight wt = gpu.load(weight("w", format, w, outF, h));
             Tensor r1 = gpu.upload(r, n, h); Tensor r2 = gpu.upload(r, n, h); Tensor xt = gpu.upload(x, n, h);
             Tensor out32 = poisoned(n, h); Tensor out16 = gpu.allocate(format, n, h);
             Tensor y32 = poisoned(n, outF); Tensor y16 = gpu.allocate(format, n, outF)) {
            gpu.addRmsNorm(r1, xt, gt, 1e-5f, out32);
            gpu.addRmsNorm(r2, xt, gt, 1e-5f, out16);
            assertThat(gpu.download(r2)).as("residual").containsExactly(gpu.download(r1));
            float[] rounded = round(format, gpu.download(out32)), got = gpu.download16(out16);
            for (int i = 0; i < got.length; i++) {
                assertThat(Float.floatToRawIntBits(got[i])).as("element %d, seed %d", i, seed).isEqualTo(Float.floatToRawIntBits(rounded[i]));
            }
            gpu.gemmOnly(out16, wt, y32);
            assertClose("GEMM of the norm's output, seed " + seed, gpu.download(y32), matmul(rounded, round(format, w), null, n, h, outF), 1e-5);
            gpu.gemmOnly(out16, wt, y16);
            assertClose("GEMM into " + format + ", seed " + seed, gpu.download16(y16), round(format, gpu.download(y32)), 4e-3);
        }
    }

    /**
     * linear takes an x already in the weight format (a norm wrote it so) with the bits it gives for the float32 x
     * it would round itself, bias included; at 64 rows or fewer, where it would split x into two parts, it refuses.
     */
    @Test
    void linearTakesXInTheWeightFormatAsItsOwnRounding() {
        int in = 256, outF = 200;
        float[] g = normal(random, in, 1f), w = normal(random, outF * in, 0.05f), b = normal(random, outF, 1f);
        try (Weight gt = gpu.load(weight("norm", DType.BF16, g, in)); Weight wt = gpu.load(weight("w", DType.BF16, w, outF, in));
             Weight bt = gpu.load(weight("b", DType.BF16, b, 1, outF))) {
            for (int n : new int[]{65, 300}) {
                try (Tensor xf = gpu.upload(normal(random, n * in, 1f), n, in); Tensor x32 = poisoned(n, in);
                     Tensor x16 = gpu.allocate(DType.BF16, n, in); Tensor y32 = poisoned(n, outF); Tensor y16 = poisoned(n, outF)) {
                    gpu.rmsNorm(xf, gt, 1e-5f, x32);
                    gpu.rmsNorm(xf, gt, 1e-5f, x16);
                    gpu.linear(x32, wt, bt, y32);
                    gpu.linear(x16, wt, bt, y16);
                    assertThat(Arrays.mismatch(gpu.download(y16), gpu.download(y32))).as("n=%d, first difference", n).isEqualTo(-1);
                }
            }
            try (Tensor x16 = gpu.allocate(DType.BF16, 64, in); Tensor y = poisoned(64, outF)) {
                assertThatThrownBy(() -> gpu.linear(x16, wt, bt, y)).isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("more than 64 rows");
            }
        }
    }

    /**
     * linearAdd and mlpAdd (LlamaModel.RESIDUAL_ADD_PROPERTY) add their product into an F32 residual inside the GEMM
     * (beta 1): the same float32 sum, bit for bit, as linear / mlp into a float32 tensor added after, which is what
     * the model's addRmsNorm does without the switch. (Should cuBLASLt ever add the residual before its last partial
     * sums, this fails and the switch's claim of equal numbers must go.) With a bias the product takes its bias
     * first, residual + (product + bias), as the unfused ops and the CPU backend do.
     */
    @Test
    void linearAddAndMlpAddAddTheProductIntoTheResidual() {
        int n = 130, in = 256, outF = 192, inner = 320;
        float[] w = normal(random, outF * in, 0.05f), b = normal(random, outF, 1f);
        float[] gu = normal(random, 2 * inner * in, 0.05f), dn = normal(random, outF * inner, 0.05f);
        try (Weight wt = gpu.load(weight("w", DType.BF16, w, outF, in)); Weight bt = gpu.load(weight("b", DType.BF16, b, 1, outF));
             Weight gt = gpu.load(weight("gu", DType.BF16, gu, 2 * inner, in)); Weight dt = gpu.load(weight("dn", DType.BF16, dn, outF, inner));
             Tensor xf = gpu.upload(normal(random, n * in, 1f), n, in); Tensor x16 = gpu.allocate(DType.BF16, n, in)) {
            assertThat(gpu.addsIntoResidual(wt, n)).isTrue();
            assertThat(gpu.addsIntoResidual(wt, 64)).as("64 rows take split activations, not the 16-bit GEMM").isFalse();
            try (Weight ones = gpu.load(weight("ones", DType.F32, filled(in, 1f), in))) {
                gpu.rmsNorm(xf, ones, 1e-5f, x16);  // x in the weights' format, as the model's norms write it
            }
            float[] r = normal(random, n * outF, 4f);
            for (Weight bias : Arrays.asList(null, bt)) {
                String with = (bias == null ? "" : " with a bias") + ", seed " + seed;
                try (Tensor acc = gpu.upload(r, n, outF); Tensor product = poisoned(n, outF)) {
                    gpu.linearAdd(x16, wt, bias, acc);
                    gpu.linear(x16, wt, bias, product);
                    assertAddedExactly("linearAdd" + with, gpu.download(acc), r, gpu.download(product));
                }
                try (Tensor acc = gpu.upload(r, n, outF); Tensor product = poisoned(n, outF)) {
                    gpu.mlpAdd(x16, gt, null, dt, bias, acc);
                    gpu.mlp(x16, gt, null, dt, bias, product);
                    assertAddedExactly("mlpAdd" + with, gpu.download(acc), r, gpu.download(product));
                }
            }
            try (Tensor small = gpu.allocate(DType.F32, 64, in); Tensor acc = gpu.upload(new float[64 * outF], 64, outF)) {
                assertThatThrownBy(() -> gpu.linearAdd(small, wt, bt, acc)).isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("addsIntoResidual");
            }
        }
    }

    /**
     * The 16-bit residual stream (CudaBackend.RESIDUAL16_PROPERTY): the embedding writes the table's values as they are,
     * the norms read them as the float32 kernel reads the same values, and linearAdd and mlpAdd add the product into
     * the residual with one rounding of the sum; a bias, or a 16-bit acc without the switch, is refused.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void residualInTheWeightFormat(DType format) {
        int n = 300, in = 256, hidden = 192, inner = 320, vocab = n + 7;
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = (i * 113 + 5) % vocab;
        float[] table = normal(random, vocab * hidden, 2f);
        boolean old = gpu.residual16(false);
        try (Weight tt = gpu.load(weight("embed", format, table, vocab, hidden));
             Weight wt = gpu.load(weight("o", format, normal(random, hidden * in, 0.05f), hidden, in));
             Weight bt = gpu.load(weight("b", format, normal(random, hidden, 1f), 1, hidden));
             Weight gt = gpu.load(weight("gu", format, normal(random, 2 * inner * in, 0.05f), 2 * inner, in));
             Weight dt = gpu.load(weight("dn", format, normal(random, hidden * inner, 0.05f), hidden, inner));
             Weight nw = gpu.load(weight("norm", format, normal(random, hidden, 1f), 1, hidden));
             Weight headNorm = gpu.load(weight("headNorm", format, normal(random, 6, 1f), 1, 6));
             Tensor idT = gpu.upload(ids, 1, n); Tensor xf = gpu.upload(normal(random, n * in, 1f), n, in);
             Tensor x16 = gpu.allocate(format, n, in); Tensor r16 = gpu.allocate(format, n, hidden); Tensor r32 = poisoned(n, hidden)) {
            assertThat(gpu.residualFormat(wt, n)).as("switch off").isEqualTo(DType.F32);
            gpu.residual16(true);
            assertThat(gpu.residualFormat(wt, n)).isEqualTo(format);
            assertThat(gpu.residualFormat(wt, 64)).as("64 rows add outside the GEMM").isEqualTo(DType.F32);
            try (Weight ones = gpu.load(weight("ones", DType.F32, filled(in, 1f), in))) {
                gpu.rmsNorm(xf, ones, 1e-5f, x16);  // x in the weights' format, as the model's norms write it
            }
            gpu.embedding(tt, idT, r16);
            gpu.embedding(tt, idT, r32);
            float[] residual = gpu.download(r32);
            assertThat(Arrays.mismatch(gpu.download16(r16), residual)).as("embedding into %s, seed %d", format, seed).isEqualTo(-1);
            // the norms: whole rows (the float4 path) and 6-wide groups (the per-element path)
            for (Weight w : List.of(nw, headNorm)) {
                try (Tensor from16 = poisoned(n, hidden); Tensor from32 = poisoned(n, hidden)) {
                    gpu.rmsNorm(r16, w, 1e-5f, from16);
                    gpu.rmsNorm(r32, w, 1e-5f, from32);
                    assertThat(Arrays.mismatch(gpu.download(from16), gpu.download(from32)))
                            .as("rmsNorm of a %s residual, groups of %d, seed %d", format, w.cols(), seed).isEqualTo(-1);
                }
            }
            try (Tensor product = poisoned(n, hidden)) {
                gpu.linear(x16, wt, null, product);
                gpu.linearAdd(x16, wt, null, r16);
                assertClose("linearAdd into " + format + ", seed " + seed, gpu.download16(r16), round(format, sum(residual, gpu.download(product))), 4e-3);
                float[] afterO = gpu.download16(r16);
                gpu.mlp(x16, gt, null, dt, null, product);
                gpu.mlpAdd(x16, gt, null, dt, null, r16);
                assertClose("mlpAdd into " + format + ", seed " + seed, gpu.download16(r16), round(format, sum(afterO, gpu.download(product))), 4e-3);
            }
            assertThatThrownBy(() -> gpu.linearAdd(x16, wt, bt, r16)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("no bias");
            assertThatThrownBy(() -> gpu.mlpAdd(x16, gt, null, dt, bt, r16)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("no bias");
            gpu.residual16(false);
            assertThatThrownBy(() -> gpu.linearAdd(x16, wt, null, r16)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(CudaBackend.RESIDUAL16_PROPERTY);
        } finally {
            gpu.residual16(old);
        }
    }

    private static float[] sum(float[] a, float[] b) {
        float[] s = new float[a.length];
        for (int i = 0; i < s.length; i++) s[i] = a[i] + b[i];
        return s;
    }

    private static float[] filled(int n, float v) {
        float[] a = new float[n];
        Arrays.fill(a, v);
        return a;
    }

    /** got must be exactly residual + product, each sum rounded to float32. */
    private static void assertAddedExactly(String what, float[] got, float[] residual, float[] product) {
        float[] want = new float[got.length];
        for (int i = 0; i < want.length; i++) want[i] = residual[i] + product[i];
        int first = Arrays.mismatch(got, want);
        assertThat(first).as("%s: first element that is not residual + product (%s)", what,
                first < 0 ? "" : got[first] + " against " + residual[first] + " + " + product[first]).isEqualTo(-1);
    }

    @ParameterizedTest
    @ValueSource(ints = {4101, 4096})
    void addRmsNormUpdatesTheResidualAndNormsIt(int h) {
        int n = 7;
        float[] r = normal(random, n * h, 1f), x = normal(random, n * h, 1f), w = normal(random, h, 1f);
        try (Weight wt = gpu.load(weight("norm", DType.F32, w, h)); Tensor rt = gpu.upload(r, n, h);
             Tensor xt = gpu.upload(x, n, h); Tensor out = poisoned(n, h)) {
            gpu.addRmsNorm(rt, xt, wt, 1e-6f, out);
            float[] sum = new float[n * h];
            for (int i = 0; i < sum.length; i++) sum[i] = r[i] + x[i];
            assertThat(gpu.download(rt)).as("residual, seed " + seed).containsExactly(sum);
            assertClose("addRmsNorm seed " + seed, gpu.download(out), rmsNorm(sum, w, 1e-6f), 1e-6);
        }
    }

    private static float[] rmsNorm(float[] x, float[] w, float eps) {
        int d = w.length;
        float[] out = new float[x.length];
        for (int g = 0; g < x.length / d; g++) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double) x[g * d + j] * x[g * d + j];
            double inv = 1.0 / Math.sqrt(ss / d + eps);
            for (int j = 0; j < d; j++) out[g * d + j] = (float) (x[g * d + j] * inv * w[j]);
        }
        return out;
    }

    /**
     * Shapes for both paths: up to {@link CudaBackend#gemvMaxRows()} rows run the gemv kernel (its 16-byte
     * loop, unrolled and not, and its scalar tail when {@code in} is not a multiple of a 16-byte piece);
     * up to {@link CudaBackend#SPLIT_MAX_ROWS} rows of 16-bit weights run cuBLASLt over split activations;
     * more rows run cuBLASLt over activations rounded to the weight format.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16", "BF16"})
    void linearMultipliesByTheTransposedWeightAndAddsBias(DType dtype) {
        eachGemvLimit(() -> linearShapes(dtype));
    }

    /** Runs {@code body} with the backend's gemv row limit as configured, then with every gemv kernel in use. */
    private static void eachGemvLimit(Runnable body) {
        body.run();
        int old = gpu.gemvMaxRows(CudaBackend.GEMV_MAX_ROWS);
        try {
            if (old != CudaBackend.GEMV_MAX_ROWS) body.run();
        } finally {
            gpu.gemvMaxRows(old);
        }
    }

    private void linearShapes(DType dtype) {
        int[][] shapes = {{1, 256, 384}, {7, 129, 67}, {8, 4096, 100}, {3, 1001, 50}, {2, 4100, 33}, {33, 512, 1000},
                {64, 257, 40}, {65, 300, 70}};
        for (int[] shape : shapes) {
            int n = shape[0], in = shape[1], outF = shape[2];
            float[] x = normal(random, n * in, 1f), w = normal(random, outF * in, 0.05f), b = normal(random, outF, 1f);
            try (Weight wt = gpu.load(weight("w", dtype, w, outF, in)); Weight bt = gpu.load(weight("b", dtype, b, outF));
                 Tensor xt = gpu.upload(x, n, in); Tensor out = poisoned(n, outF); Tensor outBias = poisoned(n, outF)) {
                gpu.linear(xt, wt, null, out);
                gpu.linear(xt, wt, bt, outBias);
                float[] wq = round(dtype, w), bq = round(dtype, b);
                String what = dtype + " " + Arrays.toString(shape) + " seed " + seed;
                if (n <= gpu.gemvMaxRows()) {
                    // gemv: float32 activations as given, float32 accumulation
                    assertClose("gemv " + what, gpu.download(out), matmul(x, wq, null, n, in, outF), 1e-5);
                    assertClose("gemv+bias " + what, gpu.download(outBias), matmul(x, wq, bq, n, in, outF), 1e-5);
                    continue;
                }
                if (dtype != DType.F32 && n <= CudaBackend.SPLIT_MAX_ROWS) {
                    // x = hi + lo in two 16-bit parts: each activation keeps ~16 mantissa bits (relative error
                    // about 2^-17), so against exact x the relative L2 error stays near 1e-5
                    assertClose("split " + what, gpu.download(out), matmul(x, wq, null, n, in, outF), 2e-5);
                    assertClose("split+bias " + what, gpu.download(outBias), matmul(x, wq, bq, n, in, outF), 2e-5);
                    continue;
                }
                // cuBLASLt sees x rounded to the weight's format (documented on Gemm); float32 accumulation
                float[] xq = round(dtype, x);
                assertClose("linear " + what, gpu.download(out), matmul(xq, wq, null, n, in, outF), 1e-5);
                assertClose("linear+bias " + what, gpu.download(outBias), matmul(xq, wq, bq, n, in, outF), 1e-5);
                // against exact float32 activations: within the format's rounding
                double tol = dtype == DType.F32 ? 1e-5 : dtype == DType.F16 ? 2e-3 : 1e-2;
                assertClose("linear vs f32 x " + what, gpu.download(out), matmul(x, wq, null, n, in, outF), tol);
            }
        }
    }

    /**
     * Sampled rows drawn on the GPU against the reference draw (Sampler.sample(row, spec)): the same token for
     * every row and every kind of spec, at a small vocabulary and at Llama 3's. The weights are the reference's
     * bit for bit and only the order of the double sums differs, so a different token would need u * total
     * within rounding of a boundary between two tokens: not expected once in these draws.
     */
    @Test
    void sampleRowsDrawsTheReferenceTokens() {
        for (int vocab : new int[]{1000, 128_256}) {
            int rows = 24;
            float[] logits = normal(random, rows * vocab, 3f);
            for (int i = 0; i < 50; i++) logits[random.nextInt(vocab)] = Float.NEGATIVE_INFINITY;  // row 0: some -inf
            SampleSpec[] specs = new SampleSpec[rows];
            for (int r = 0; r < rows; r++) {
                if (r % 7 == 3) continue;  // not sampled
                float invT = r == 5 ? Float.POSITIVE_INFINITY : (float) (1.0 / (0.1 + 2 * random.nextDouble()));
                int topK = r % 3 == 0 ? 0 : 1 + random.nextInt(r % 2 == 0 ? 5 : 2000);
                double topP = r % 4 == 1 ? 1 : 0.05 + 0.95 * random.nextDouble();
                float minP = r % 5 == 2 ? (float) (0.2 * random.nextDouble()) : 0f;
                specs[r] = new SampleSpec(invT, topK, topP, minP, random.nextLong(), random.nextInt(1000));
            }
            try (Tensor t = gpu.upload(logits, rows, vocab)) {
                int[] got = gpu.sampleRows(t, specs);
                for (int r = 0; r < rows; r++) {
                    if (specs[r] == null) {
                        assertThat(got[r]).as("row %d has no spec", r).isEqualTo(Backend.NOT_SAMPLED);
                        continue;
                    }
                    int want = dev.lathe.core.sampling.Sampler.sample(Arrays.copyOfRange(logits, r * vocab, (r + 1) * vocab), specs[r]);
                    assertThat(got[r]).as("vocab %d row %d %s seed %d", vocab, r, specs[r], seed).isEqualTo(want);
                }
            }
        }
        // the reference's errors, as codes
        int vocab = 300;
        float[] bad = normal(random, 3 * vocab, 1f);
        bad[17] = Float.NaN;
        Arrays.fill(bad, vocab, 2 * vocab, Float.NEGATIVE_INFINITY);
        bad[2 * vocab + 40] = Float.POSITIVE_INFINITY;
        SampleSpec any = new SampleSpec(1f, 0, 1, 0f, 1, 0);
        try (Tensor t = gpu.upload(bad, 3, vocab)) {
            assertThat(gpu.sampleRows(t, new SampleSpec[]{any, any, any})).containsExactly(-1, -2, -3);
        }
    }

    /**
     * uploadInts packs a step's int arrays into one buffer and one copy: each tensor reads back as its array (an empty
     * one and a two-row one among them), kernels read them at their offsets (gatherRows by the packed row numbers), a
     * write lands in its own tensor only, and the buffer goes back to the pool only after the last tensor is closed.
     */
    @Test
    void packedIntUploadsReadBackAsTheirArrays() {
        int[] a = {3, 1, 4}, empty = {}, b = {9, 2, 6, 5, 3, 5}, c = new int[300];
        for (int i = 0; i < c.length; i++) c[i] = i * 7;
        Tensor[] t = gpu.uploadInts(new int[][]{a, empty, b, c}, new int[]{1, 1, 2, 1}, new int[]{3, 0, 3, 300});
        try (Tensor table = gpu.upload(normal(random, 10 * 4, 1f), 10, 4); Tensor rows = poisoned(3, 4)) {
            assertThat(gpu.downloadInts(t[0])).containsExactly(a);
            assertThat(t[1].rows() * t[1].cols()).isZero();
            assertThat(gpu.downloadInts(t[2])).containsExactly(b);
            assertThat(t[2].rows()).isEqualTo(2);
            assertThat(gpu.downloadInts(t[3])).containsExactly(c);
            gpu.gatherRows(table, t[0], rows);
            float[] all = gpu.download(table), got = gpu.download(rows);
            for (int r = 0; r < 3; r++) {
                assertThat(Arrays.copyOfRange(got, 4 * r, 4 * r + 4)).as("row %d", r).containsExactly(Arrays.copyOfRange(all, 4 * a[r], 4 * a[r] + 4));
            }
            gpu.write(t[2], new int[]{1, 1, 1});
            assertThat(gpu.downloadInts(t[2])).containsExactly(1, 1, 1, 5, 3, 5);
            assertThat(gpu.downloadInts(t[0])).containsExactly(a);
            assertThat(gpu.downloadInts(t[3])).containsExactly(c);
            t[0].close();
            t[1].close();
            t[2].close();
            assertThat(gpu.downloadInts(t[3])).as("the last tensor open").containsExactly(c);
        } finally {
            for (Tensor x : t) x.close();
        }
    }

    /**
     * GEMMs of at least 1024 rows run algorithms planned without workspace (Gemm.WORKSPACE_FREE_ROWS_PROPERTY): a plain
     * and an accumulating product of 1100 rows against the reference, with tuning off (the heuristic's choice); a
     * 300-row product keeps the workspace.
     */
    @Test
    void prefillSizedGemmsWithoutWorkspaceComputeTheProduct() {
        int n = 1100, in = 256, outF = 768;
        float[] x = normal(random, n * in, 1f), w = normal(random, outF * in, 0.05f), acc = normal(random, n * outF, 1f);
        boolean old = gpu.gemmTuning(false);
        try (Weight wt = gpu.load(weight("w", DType.BF16, w, outF, in)); Tensor xt = gpu.upload(x, n, in);
             Tensor out = poisoned(n, outF); Tensor sum = gpu.upload(acc, n, outF)) {
            float[] want = matmul(round(DType.BF16, x), round(DType.BF16, w), null, n, in, outF);
            gpu.linear(xt, wt, null, out);
            assertThat(gpu.gemmWorkspace(wt, n)).as("workspace of the 1100-row plan").isZero();
            assertClose("linear of 1100 rows seed " + seed, gpu.download(out), want, 1e-5);
            gpu.linearAdd(xt, wt, null, sum);
            for (int i = 0; i < want.length; i++) want[i] += acc[i];
            assertClose("linearAdd of 1100 rows seed " + seed, gpu.download(sum), want, 1e-5);
            try (Tensor few = gpu.upload(Arrays.copyOf(x, 300 * in), 300, in); Tensor fewOut = poisoned(300, outF)) {
                gpu.linear(few, wt, null, fewOut);
                assertThat(gpu.gemmWorkspace(wt, 300)).as("workspace of the 300-row plan").isPositive();
            }
        } finally {
            gpu.gemmTuning(old);
        }
    }

    /** With algorithm timing on, a prefill-sized GEMM is timed once and still computes the product. */
    @Test
    void tunedGemmKeepsAnAlgorithmAndComputesTheProduct() {
        int n = 300, in = 512, outF = 1000;
        float[] x = normal(random, n * in, 1f), w = normal(random, outF * in, 0.05f);
        boolean old = gpu.gemmTuning(true);
        try (Weight wt = gpu.load(weight("w", DType.BF16, w, outF, in)); Tensor xt = gpu.upload(x, n, in);
             Tensor out = poisoned(n, outF); Tensor again = poisoned(n, outF)) {
            gpu.linear(xt, wt, null, out);
            assertThat(gpu.gemmChoices()).as("timed shapes").containsKey("BF16 n=" + n + " in=" + in + " out=" + outF);
            float[] want = matmul(round(DType.BF16, x), round(DType.BF16, w), null, n, in, outF);
            assertClose("tuned linear seed " + seed, gpu.download(out), want, 1e-5);
            gpu.linear(xt, wt, null, again);  // the kept algorithm, no timing: the same bits
            assertThat(Arrays.mismatch(gpu.download(again), gpu.download(out))).isEqualTo(-1);
        } finally {
            gpu.gemmTuning(old);
        }
    }

    /**
     * With algorithm timing on, an accumulating GEMM (linearAdd: D = x w^T + D) is timed on a scratch matrix: its
     * residual receives the product once, however many timing runs there were.
     */
    @Test
    void tunedAccumulatingGemmAddsTheProductOnce() {
        int n = 300, in = 512, outF = 1000;
        float[] x = normal(random, n * in, 1f), w = normal(random, outF * in, 0.05f), acc = normal(random, n * outF, 1f);
        boolean old = gpu.gemmTuning(true);
        try (Weight wt = gpu.load(weight("w", DType.BF16, w, outF, in)); Tensor xt = gpu.upload(x, n, in);
             Tensor sum = gpu.upload(acc, n, outF)) {
            gpu.linearAdd(xt, wt, null, sum);
            assertThat(gpu.gemmChoices()).as("timed shapes").containsKey("BF16 n=" + n + " in=" + in + " out=" + outF);
            float[] want = matmul(round(DType.BF16, x), round(DType.BF16, w), null, n, in, outF);
            for (int i = 0; i < want.length; i++) want[i] += acc[i];
            assertClose("tuned linearAdd seed " + seed, gpu.download(sum), want, 1e-5);
        } finally {
            gpu.gemmTuning(old);
        }
    }

    /** Every algorithm tuning may pick computes the product: a decode-step shape (256 rows, a 4096-long K walk). */
    @Test
    void everyTuningCandidateComputesTheProduct() {
        int n = 256, in = 4096, outF = 1024;
        float[] x = normal(random, n * in, 1f), w = normal(random, outF * in, 0.02f);
        float[] want = matmul(round(DType.BF16, x), round(DType.BF16, w), null, n, in, outF);
        try (Weight wt = gpu.load(weight("w", DType.BF16, w, outF, in)); Tensor xt = gpu.upload(x, n, in)) {
            int count = gpu.gemmCandidates(wt, n);
            System.out.println("GEMM candidates for n=" + n + " in=" + in + " out=" + outF + ": " + count);
            assertThat(count).as("candidates").isPositive();
            for (int i = 0; i < count; i++) {
                try (Tensor out = poisoned(n, outF)) {
                    gpu.linearWithCandidate(xt, wt, out, i);
                    assertClose("candidate " + i + " seed " + seed, gpu.download(out), want, 1e-5);
                }
            }
        }
    }

    /**
     * Both loops of the kernel: 128,256 columns (every row 16-byte aligned: four floats a load) and 32,003 (odd: rows
     * after the first are not aligned, and the first has a tail of three past its last four).
     */
    @Test
    void argmaxRowsFindsTheLowestLargestColumnAndFlagsNaN() {
        for (int cols : new int[]{128_256, 32_003}) {
            int rows = 7;
            float[] x = normal(random, rows * cols, 3f);
            x[2 * cols + cols - 9_000] = 50f;              // a clear winner late in the row
            x[3 * cols + 5] = 60f;                         // a tie: the lower column wins
            x[3 * cols + cols - 4_001] = 60f;
            Arrays.fill(x, 4 * cols, 5 * cols, Float.NEGATIVE_INFINITY);  // all -inf: column 0
            x[5 * cols + 1234] = Float.NaN;                // NaN: -1
            x[6 * cols + cols - 1] = 70f;                  // a tie between the last column and a middle one
            x[6 * cols + cols / 2 + 1] = 70f;
            x[0] = 80f;                                    // row 0: the last column wins alone
            x[cols - 1] = 90f;
            int[] want = new int[rows];
            for (int r = 0; r < rows; r++) {
                int best = 0;
                for (int c = 1; c < cols; c++) if (x[r * cols + c] > x[r * cols + best]) best = c;
                want[r] = best;
            }
            want[5] = -1;
            assertThat(want[6]).isEqualTo(cols / 2 + 1);
            try (Tensor t = gpu.upload(x, rows, cols)) {
                assertThat(gpu.argmaxRows(t)).as("argmax rows of %d columns, seed %d", cols, seed).containsExactly(want);
            }
        }
        try (Tensor t = gpu.upload(new float[]{1f, 7f, 7f}, 1, 3)) {
            assertThat(gpu.argmaxRows(t)).containsExactly(1);
        }
    }

    private static float[] matmul(float[] x, float[] w, float[] b, int n, int in, int outF) {
        float[] out = new float[n * outF];
        for (int r = 0; r < n; r++) {
            for (int o = 0; o < outF; o++) {
                double s = b == null ? 0 : b[o];
                for (int k = 0; k < in; k++) s += (double) x[r * in + k] * w[o * in + k];
                out[r * outF + o] = (float) s;
            }
        }
        return out;
    }

    @Test
    void splitColumnsCopiesEachRange() {
        int n = 9, a = 13, b = 64, c = 7;
        float[] src = normal(random, n * (a + b + c), 1f);
        try (Tensor st = gpu.upload(src, n, a + b + c); Tensor ta = poisoned(n, a); Tensor tb = poisoned(n, b);
             Tensor tc = poisoned(n, c)) {
            gpu.splitColumns(st, ta, tb, tc);
            int off = 0;
            for (int[] part : new int[][]{{a}, {b}, {c}}) {
                int w = part[0];
                float[] want = new float[n * w];
                for (int r = 0; r < n; r++) System.arraycopy(src, r * (a + b + c) + off, want, r * w, w);
                Tensor t = w == a ? ta : w == b ? tb : tc;
                assertThat(gpu.download(t)).as("width " + w + " seed " + seed).containsExactly(want);
                off += w;
            }
        }
    }

    @Test
    void ropeRotatesHalvesOfEachHead() {
        int n = 11, heads = 5, half = 40;
        float[] x = normal(random, n * heads * 2 * half, 1f);
        float[][] rotary = Host.rotaryRows(random, n, half);
        float[] cos = rotary[0], sin = rotary[1];
        try (Tensor xt = gpu.upload(x, n, heads * 2 * half); Tensor ct = gpu.upload(cos, n, half); Tensor st = gpu.upload(sin, n, half)) {
            gpu.rope(xt, ct, st);
            float[] want = x.clone();
            for (int r = 0; r < n; r++) {
                for (int h = 0; h < heads; h++) {
                    int base = (r * heads + h) * 2 * half;
                    for (int j = 0; j < half; j++) {
                        float c = cos[r * half + j], s = sin[r * half + j], x1 = x[base + j], x2 = x[base + j + half];
                        want[base + j] = x1 * c - x2 * s;
                        want[base + j + half] = x2 * c + x1 * s;
                    }
                }
            }
            assertClose("rope seed " + seed, gpu.download(xt), want, 1e-6);
        }
    }

    /** The fused op against the four it replaces: the same q and the same cache bytes, padding rows written nowhere. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F32"})
    void ropeWriteKvEqualsSplitRopeAndWrite(DType cacheType) {
        // head sizes of 32 pairs (two blocks of pairs a token), 48 (not a power of two), 64 (the Llama shape): four
        // pairs a thread; 18 pairs (not a multiple of 4): one pair a thread
        for (int headDim : new int[]{64, 96, 128, 36}) ropeWriteKvEqualsSplitRopeAndWrite(cacheType, headDim);
    }

    private void ropeWriteKvEqualsSplitRopeAndWrite(DType cacheType, int headDim) {
        int n = 7, heads = 6, kvHeads = 2, half = headDim / 2, blocks = 5, blockSize = 4;
        int qWidth = heads * headDim, kvWidth = kvHeads * headDim;
        float[] qkv = normal(random, n * (qWidth + 2 * kvWidth), 2f);
        float[][] rotary = Host.rotaryRows(random, n, half);
        float[] cos = rotary[0], sin = rotary[1];
        int[] slots = {3, 17, -1, 0, 19, -1, 8};  // two padding rows
        try (KvCache fused = gpu.allocateKvCache(2, blocks, blockSize, kvHeads, headDim, cacheType);
             KvCache apart = gpu.allocateKvCache(2, blocks, blockSize, kvHeads, headDim, cacheType);
             Tensor x = gpu.upload(qkv, n, qWidth + 2 * kvWidth); Tensor ct = gpu.upload(cos, n, half);
             Tensor st = gpu.upload(sin, n, half); Tensor slotT = gpu.upload(slots, 1, n);
             Tensor qFused = poisoned(n, qWidth); Tensor qApart = poisoned(n, qWidth);
             Tensor k = poisoned(n, kvWidth); Tensor v = poisoned(n, kvWidth);
             Tensor fill = gpu.upload(normal(random, blocks * blockSize * kvWidth, 1f), blocks * blockSize, kvWidth);
             Tensor all = gpu.upload(java.util.stream.IntStream.range(0, blocks * blockSize).toArray(), 1, blocks * blockSize)) {
            for (KvCache c : List.of(fused, apart)) {  // both caches start from the same values, so a stray write shows
                for (int layer = 0; layer < 2; layer++) gpu.writeKv(c, layer, fill, fill, all);
            }
            gpu.ropeWriteKv(x, qFused, ct, st, fused, 1, slotT);
            gpu.splitColumns(x, qApart, k, v);
            gpu.rope(qApart, ct, st);
            gpu.rope(k, ct, st);
            gpu.writeKv(apart, 1, k, v, slotT);
            assertThat(gpu.download(qFused)).as("q, head size %d, seed %d", headDim, seed).containsExactly(gpu.download(qApart));
            byte[] a = gpu.cacheBytes(fused), b = gpu.cacheBytes(apart);
            assertThat(Arrays.equals(a, b)).as("cache bytes, head size %d, seed %d", headDim, seed).isTrue();
            byte[] before;
            try (KvCache untouched = gpu.allocateKvCache(2, blocks, blockSize, kvHeads, headDim, cacheType)) {
                for (int layer = 0; layer < 2; layer++) gpu.writeKv(untouched, layer, fill, fill, all);
                before = gpu.cacheBytes(untouched);
            }
            assertThat(Arrays.equals(a, before)).as("the step wrote something").isFalse();
        }
    }

    /**
     * CudaBackend.ROPE_IN_ATTENTION_PROPERTY: where a flash kernel takes every row of the step, ropeAttention rotates the
     * queries inside it, leaves q unwritten, and gives the bits of ropeWriteKv then attention (output and cache). A step
     * with short rows beside the prefill, or a float32 qkv, takes the two ops and writes q.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void ropeAttentionRotatesTheQueriesInsideTheFlashKernels(DType cacheType) {
        // the default kernel (the overlapped wgmma one on an sm_90); partial items and a chunk after cached tokens
        ropeAttentionCase(cacheType, cacheType, 32, 8, 128, 16,
                List.of(new Seq(300, 300), new Seq(1000, 700), new Seq(131, 131)), true);
        // the plain kernel at head size 64, 24-slot blocks
        withGroupedFlash(false, () -> ropeAttentionCase(cacheType, cacheType, 8, 2, 64, 24,
                List.of(new Seq(400, 200), new Seq(90, 90)), true));
        // the mma.sync grouped kernel (wgmma off), groups of 8
        boolean oldWgmma = gpu.flashGqaWgmma(false);
        try {
            ropeAttentionCase(cacheType, cacheType, 16, 2, 128, 32, List.of(new Seq(150, 131), new Seq(200, 65)), true);
        } finally {
            gpu.flashGqaWgmma(oldWgmma);
        }
        if (gpu.wgmmaCapable()) {
            boolean oldWs = gpu.flashGqaWarpSpecialized(true);
            try {
                ropeAttentionCase(cacheType, cacheType, 32, 8, 128, 16, List.of(new Seq(250, 250), new Seq(90, 65)), true);
                assertThat(gpu.lastFlashKernel()).startsWith("flash_attention_gqa_ws_");
            } finally {
                gpu.flashGqaWarpSpecialized(oldWs);
            }
        }
        // decode rows beside the prefill go to the split kernel, which reads q: the two ops
        ropeAttentionCase(cacheType, cacheType, 32, 8, 128, 16, List.of(new Seq(70, 70), new Seq(50, 1)), false);
        // a float32 qkv: the two ops
        ropeAttentionCase(cacheType, DType.F32, 32, 8, 128, 16, List.of(new Seq(100, 100)), false);
    }

    /**
     * One step of {@code seqs} (context, queries: the last {@code queries} positions are this step's, the others cached
     * already) through ropeAttention with the switch on and with it off, from the same qkv (in {@code qkvType}) and the
     * same cache; {@code inKernel}: whether the switch's path leaves q unwritten.
     */
    private void ropeAttentionCase(DType cacheType, DType qkvType, int heads, int kvHeads, int headDim, int blockSize, List<Seq> seqs,
                                   boolean inKernel) {
        int numSeqs = seqs.size(), half = headDim / 2, kvWidth = kvHeads * headDim, qWidth = heads * headDim;
        int maxBlocks = 0, numBlocks = 0, numTokens = 0, cached = 0;
        for (Seq s : seqs) {
            int b = (s.context + blockSize - 1) / blockSize;
            maxBlocks = Math.max(maxBlocks, b);
            numBlocks += b;
            numTokens += s.queries;
            cached += s.context - s.queries;
        }
        int[] tables = new int[numSeqs * maxBlocks], starts = new int[numSeqs + 1], lens = new int[numSeqs];
        int[] stepSlots = new int[numTokens], pastSlots = new int[cached];
        Arrays.fill(tables, -1);
        for (int s = 0, next = 0, t = 0, p = 0; s < numSeqs; s++) {
            Seq sq = seqs.get(s);
            for (int b = 0; b < (sq.context + blockSize - 1) / blockSize; b++) tables[s * maxBlocks + b] = numBlocks - 1 - next++;
            for (int pos = 0; pos < sq.context; pos++) {
                int slot = tables[s * maxBlocks + pos / blockSize] * blockSize + pos % blockSize;
                if (pos < sq.context - sq.queries) pastSlots[p++] = slot;
                else stepSlots[t++] = slot;
            }
            starts[s + 1] = starts[s] + sq.queries;
            lens[s] = sq.context;
        }
        float[] qkv = normal(random, numTokens * (qWidth + 2 * kvWidth), 1f);
        float[][] rotary = Host.rotaryRows(random, numTokens, half);
        float[] cos = rotary[0], sin = rotary[1];
        float scale = (float) (1 / Math.sqrt(headDim));
        String where = String.format("%s cache, %s qkv, %d/%d heads of %d, seqs %s, seed %d", cacheType, qkvType, heads, kvHeads,
                headDim, seqs, seed);
        float[][] outs = new float[2][];
        byte[][] caches = new byte[2][];
        boolean old = gpu.ropeInAttention(true);
        try (Tensor qkv32 = gpu.upload(qkv, numTokens, qWidth + 2 * kvWidth);
             Tensor qkvT = qkvType == DType.F32 ? null : gpu.rounded(qkv32, qkvType);
             Tensor ct = gpu.upload(cos, numTokens, half); Tensor st = gpu.upload(sin, numTokens, half);
             Tensor past = gpu.upload(normal(random, Math.max(1, cached) * kvWidth, 1f), Math.max(1, cached), kvWidth);
             Tensor pastSlotT = gpu.upload(cached == 0 ? new int[]{-1} : pastSlots, 1, Math.max(1, cached));
             AttentionMetadata meta = new AttentionMetadata(numSeqs, numTokens, Arrays.stream(lens).max().orElse(0),
                     gpu.upload(starts, 1, numSeqs + 1), gpu.upload(lens, 1, numSeqs), gpu.upload(tables, numSeqs, maxBlocks),
                     gpu.upload(stepSlots, 1, numTokens), starts, lens, 0)) {
            for (int run = 0; run < 2; run++) {
                gpu.ropeInAttention(run == 0);
                try (KvCache cache = gpu.allocateKvCache(2, numBlocks, blockSize, kvHeads, headDim, cacheType);
                     Tensor q = poisoned(numTokens, qWidth); Tensor out = poisoned(numTokens, qWidth)) {
                    gpu.writeKv(cache, 1, past, past, pastSlotT);
                    gpu.ropeAttention(qkvT == null ? qkv32 : qkvT, q, ct, st, cache, 1, meta, scale, out);
                    outs[run] = gpu.download(out);
                    caches[run] = gpu.cacheBytes(cache);
                    float[] qs = gpu.download(q);
                    boolean written = !Float.isNaN(qs[0]) && !Float.isNaN(qs[qs.length - 1]);
                    assertThat(written).as("q written, switch %s, %s", run == 0 ? "on" : "off", where).isEqualTo(run == 1 || !inKernel);
                }
            }
        } finally {
            gpu.ropeInAttention(old);
        }
        assertThat(Arrays.equals(caches[0], caches[1])).as("cache bytes, %s", where).isTrue();
        for (int i = 0; i < outs[0].length; i++) {
            if (Float.floatToRawIntBits(outs[0][i]) != Float.floatToRawIntBits(outs[1][i])) {
                throw new AssertionError("output " + i + " (row " + i / qWidth + "): " + outs[0][i] + " with the rotation in the kernel, "
                        + outs[1][i] + " from ropeWriteKv then attention; " + where);
            }
        }
        for (int i = 0; i < outs[0].length; i++) {
            if (Float.isNaN(outs[0][i])) throw new AssertionError("output " + i + " is NaN (not written); " + where);
        }
    }

    /**
     * lathe.qkv.out16: a long step's qkv projection written in the weight format (the float32 product rounded, to the
     * GEMM's precision), refused with a bias or at rows that take the split or gemv path; rope_write_kv reading it
     * gives q and cache bytes equal to those from a float32 qkv holding the same rounded values.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void qkvInTheWeightFormatFeedsRopeWriteKv(DType format) {
        int n = 100, in = 256, heads = 4, kvHeads = 2, headDim = 64, half = headDim / 2, blocks = 30, blockSize = 4;
        int width = (heads + 2 * kvHeads) * headDim;
        float[] x = normal(random, n * in, 1f), w = normal(random, width * in, 0.05f), b = normal(random, width, 1f);
        float[][] rotary = Host.rotaryRows(random, n, half);
        float[] cos = rotary[0], sin = rotary[1];
        int[] slots = new int[n];
        for (int i = 0; i < n; i++) slots[i] = i % 7 == 3 ? -1 : (i * 37) % (blocks * blockSize);  // distinct slots, some padding
        boolean old = gpu.qkv16(false);
        try (Weight wt = gpu.load(weight("qkv", format, w, width, in)); Weight bt = gpu.load(weight("bias", format, b, width));
             Tensor xt = gpu.upload(x, n, in); Tensor out32 = poisoned(n, width); Tensor out16 = gpu.allocate(format, n, width);
             Tensor ct = gpu.upload(cos, n, half); Tensor st = gpu.upload(sin, n, half); Tensor slotT = gpu.upload(slots, 1, n);
             Tensor q16 = poisoned(n, heads * headDim); Tensor q32 = poisoned(n, heads * headDim);
             KvCache from16 = gpu.allocateKvCache(1, blocks, blockSize, kvHeads, headDim, format);
             KvCache from32 = gpu.allocateKvCache(1, blocks, blockSize, kvHeads, headDim, format)) {
            try (Tensor fill = gpu.upload(normal(random, blocks * blockSize * kvHeads * headDim, 1f), blocks * blockSize, kvHeads * headDim);
                 Tensor all = gpu.upload(java.util.stream.IntStream.range(0, blocks * blockSize).toArray(), 1, blocks * blockSize)) {
                for (KvCache c : List.of(from16, from32)) gpu.writeKv(c, 0, fill, fill, all);  // the slots no row writes match too
            }
            assertThat(gpu.projectionFormat(wt, n)).isEqualTo(DType.F32);
            gpu.qkv16(true);
            assertThat(gpu.projectionFormat(wt, n)).isEqualTo(format);
            assertThat(gpu.projectionFormat(wt, CudaBackend.SPLIT_MAX_ROWS)).isEqualTo(DType.F32);
            gpu.linear(xt, wt, null, out32);
            gpu.linear(xt, wt, null, out16);
            float[] rounded = gpu.download16(out16);
            assertClose("qkv in " + format + ", seed " + seed, rounded, round(format, gpu.download(out32)), 4e-3);
            assertThatThrownBy(() -> gpu.linear(xt, wt, bt, out16)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("without a bias");
            try (Tensor fewX = gpu.upload(Arrays.copyOf(x, 10 * in), 10, in); Tensor few16 = gpu.allocate(format, 10, width)) {
                assertThatThrownBy(() -> gpu.linear(fewX, wt, null, few16)).isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("projectionFormat");
            }
            try (Tensor asF32 = gpu.upload(rounded, n, width)) {
                gpu.ropeWriteKv(out16, q16, ct, st, from16, 0, slotT);
                gpu.ropeWriteKv(asF32, q32, ct, st, from32, 0, slotT);
            }
            assertThat(Arrays.mismatch(gpu.download(q16), gpu.download(q32))).as("q, seed %d: first differing element", seed)
                    .isEqualTo(-1);
            assertThat(Arrays.equals(gpu.cacheBytes(from16), gpu.cacheBytes(from32))).as("cache bytes, seed %d", seed).isTrue();
        } finally {
            gpu.qkv16(old);
        }
    }

    /** The fused GEMV + SiLU-and-multiply against the two ops, bit for bit, for every GEMV row count and with bias. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16", "F32"})
    void linearSiluMulEqualsLinearThenSiluMul(DType dtype) {
        eachGemvLimit(() -> linearSiluMulCases(dtype));
    }

    private void linearSiluMulCases(DType dtype) {
        int in = 520, inner = 301;  // 16-byte pieces for every type; 301 features leave a partial block of warps
        for (int n : new int[]{1, 2, 3, 5, 8, 9}) {
            for (boolean withBias : new boolean[]{false, true}) {
                float[] x = normal(random, n * in, 1f), w = normal(random, 2 * inner * in, 0.05f), b = normal(random, 2 * inner, 1f);
                try (Weight wt = gpu.load(weight("w", dtype, w, 2 * inner, in)); Weight bt = gpu.load(weight("b", dtype, b, 2 * inner));
                     Tensor xt = gpu.upload(x, n, in); Tensor fused = poisoned(n, inner); Tensor gateUp = poisoned(n, 2 * inner);
                     Tensor apart = poisoned(n, inner)) {
                    gpu.linearSiluMul(xt, wt, withBias ? bt : null, fused);
                    gpu.linear(xt, wt, withBias ? bt : null, gateUp);
                    gpu.siluMul(gateUp, apart);
                    float[] got = gpu.download(fused), want = gpu.download(apart);
                    int first = Arrays.mismatch(got, want);
                    assertThat(first).as("%s n=%d bias=%s gemv rows<=%d seed %d: first difference at %d", dtype, n, withBias,
                                    gpu.gemvMaxRows(), seed, first)
                            .isEqualTo(-1);
                    for (float v : got) assertThat(Float.isNaN(v)).as("NaN in the output (not written?)").isFalse();
                }
            }
        }
    }

    /** The fused long-step MLP (activation kept in the weight format) against the ops it replaces, bit for bit. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void fusedMlpEqualsTheTwoOps(DType dtype) {
        int in = 256, inner = 200, outF = 96;
        for (int n : new int[]{65, 300}) {
            float[] x = normal(random, n * in, 1f), gu = normal(random, 2 * inner * in, 0.05f), dw = normal(random, outF * inner, 0.05f);
            float[] gb = normal(random, 2 * inner, 1f), db = normal(random, outF, 1f);
            try (Weight g = gpu.load(weight("gu", dtype, gu, 2 * inner, in)); Weight gbt = gpu.load(weight("gub", dtype, gb, 2 * inner));
                 Weight d = gpu.load(weight("down", dtype, dw, outF, inner)); Weight dbt = gpu.load(weight("downb", dtype, db, outF));
                 Tensor xt = gpu.upload(x, n, in); Tensor fused = poisoned(n, outF); Tensor apart = poisoned(n, outF)) {
                boolean old = gpu.fusedMlp(true);
                try {
                    gpu.mlp(xt, g, gbt, d, dbt, fused);
                    gpu.fusedMlp(false);
                    gpu.mlp(xt, g, gbt, d, dbt, apart);
                } finally {
                    gpu.fusedMlp(old);
                }
                float[] got = gpu.download(fused), want = gpu.download(apart);
                assertThat(Arrays.mismatch(got, want)).as("%s n=%d seed %d: first difference", dtype, n, seed).isEqualTo(-1);
                for (float v : got) assertThat(Float.isNaN(v)).as("NaN (not written?)").isFalse();
            }
        }
    }

    /**
     * Picks kept on the device (argmaxRowsAsync) equal argmaxRows, NaN rows included; forwardTokens puts chosen picks
     * into another step's ids on the device; the host slots are reused across many steps.
     */
    @Test
    void picksKeptOnTheDeviceFeedTheNextStepsIds() {
        int rows = 37, vocab = 1000;
        for (int round = 0; round < 6; round++) {
            float[] x = normal(random, rows * vocab, 1f);
            x[5 * vocab + 17] = Float.NaN;
            try (Tensor xt = gpu.upload(x, rows, vocab); Tensor ids = gpu.upload(new int[20], 1, 20);
                 var picks = gpu.argmaxRowsAsync(xt)) {
                int[] want = gpu.argmaxRows(xt);
                assertThat(want[5]).isEqualTo(-1);
                gpu.forwardTokens(picks.tokens(), new int[]{3, 0, 36, 3}, ids, new int[]{19, 0, 7, 8});
                assertThat(picks.await()).containsExactly(want);
                int[] expect = new int[20];
                expect[19] = want[3];
                expect[0] = want[0];
                expect[7] = want[36];
                expect[8] = want[3];
                assertThat(gpu.downloadInts(ids)).containsExactly(expect);
            }
        }
        assertThatThrownBy(() -> {
            try (Tensor t = gpu.upload(new int[4], 1, 4); Tensor ids = gpu.upload(new int[4], 1, 4)) {
                gpu.forwardTokens(t, new int[]{4}, ids, new int[]{0});
            }
        }).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside");
    }

    /**
     * SiLU-and-multiply from a 16-bit gate/up product into the same format (the fused MLP with lathe.mlp.gate16):
     * eight values a thread where inner is a multiple of 8, one otherwise; either way the bits of the float32 kernel
     * on the same (exactly widened) inputs, rounded to nearest even.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void siluMulInA16BitFormatIsTheFloat32ResultRounded(DType format) {
        for (int inner : new int[]{200, 196}) {
            int n = 37;
            float[] x = round(format, normal(random, n * 2 * inner, 2f));
            try (Tensor xt = gpu.upload(x, n, 2 * inner); Tensor out32 = poisoned(n, inner);
                 Tensor out16 = gpu.allocate(format, n, inner)) {
                gpu.siluMul(xt, out32);
                gpu.siluMul16(xt, out16);
                float[] want = round(format, gpu.download(out32)), got = gpu.download16(out16);
                int firstDiff = Arrays.mismatch(got, want);
                assertThat(firstDiff).as("%s inner=%d seed %d: first difference at %d", format, inner, seed, firstDiff).isEqualTo(-1);
            }
        }
    }

    /**
     * The fused MLP with the gate/up product kept in the weight format (lathe.mlp.gate16): x and the product rounded
     * to the format, SiLU-and-multiply in float32 rounded again, then the down GEMM (bias added). Against that
     * arithmetic on the host: float32 sums in another order (about K * 2^-24) and the rare product rounded the
     * other way at a format boundary stay far below 1e-4.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void mlpWithA16BitGateProductRoundsItBeforeTheActivation(DType dtype) {
        int in = 256, inner = 200, outF = 96;
        for (int n : new int[]{65, 300}) {
            float[] x = normal(random, n * in, 1f), gu = normal(random, 2 * inner * in, 0.05f), dw = normal(random, outF * inner, 0.05f);
            float[] db = normal(random, outF, 1f);
            try (Weight g = gpu.load(weight("gu", dtype, gu, 2 * inner, in)); Weight d = gpu.load(weight("down", dtype, dw, outF, inner));
                 Weight dbt = gpu.load(weight("downb", dtype, db, outF)); Tensor xt = gpu.upload(x, n, in); Tensor out = poisoned(n, outF)) {
                boolean oldFused = gpu.fusedMlp(true), oldGate = gpu.mlpGate16(true);
                try {
                    gpu.mlp(xt, g, null, d, dbt, out);
                } finally {
                    gpu.fusedMlp(oldFused);
                    gpu.mlpGate16(oldGate);
                }
                float[] prod = round(dtype, matmul(round(dtype, x), round(dtype, gu), null, n, in, 2 * inner));
                float[] act = new float[n * inner];
                for (int r = 0; r < n; r++) {
                    for (int j = 0; j < inner; j++) {
                        float a = prod[r * 2 * inner + j], b = prod[r * 2 * inner + inner + j];
                        act[r * inner + j] = (a / (1f + (float) Math.exp(-a))) * b;
                    }
                }
                float[] want = matmul(round(dtype, act), round(dtype, dw), round(dtype, db), n, inner, outF);
                assertClose(dtype + " n=" + n + " seed " + seed, gpu.download(out), want, 1e-4);
            }
        }
    }

    @Test
    void siluMulGatesTheUpHalf() {
        int n = 6, inner = 1001;
        float[] x = normal(random, n * 2 * inner, 3f);
        try (Tensor xt = gpu.upload(x, n, 2 * inner); Tensor out = poisoned(n, inner)) {
            gpu.siluMul(xt, out);
            float[] want = new float[n * inner];
            for (int r = 0; r < n; r++) {
                for (int j = 0; j < inner; j++) {
                    double a = x[r * 2 * inner + j];
                    want[r * inner + j] = (float) (a / (1 + Math.exp(-a)) * x[r * 2 * inner + inner + j]);
                }
            }
            assertClose("siluMul seed " + seed, gpu.download(out), want, 1e-6);
        }
    }

    @Test
    void gatherRowsPicksRowsInOrder() {
        int rows = 23, cols = 77, m = 9;
        float[] x = normal(random, rows * cols, 1f);
        int[] idx = new int[m];
        for (int i = 0; i < m; i++) idx[i] = random.nextInt(rows);
        try (Tensor xt = gpu.upload(x, rows, cols); Tensor it = gpu.upload(idx, 1, m); Tensor out = poisoned(m, cols)) {
            gpu.gatherRows(xt, it, out);
            float[] want = new float[m * cols];
            for (int i = 0; i < m; i++) System.arraycopy(x, idx[i] * cols, want, i * cols, cols);
            assertThat(gpu.download(out)).as("seed " + seed).containsExactly(want);
        }
    }

    // ---- KV cache and attention -------------------------------------------------------------

    /** One sequence of a batch: its context length and how many of its last tokens are queries. */
    private record Seq(int context, int queries) {}

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "BF16"})
    void pagedAttentionMatchesDenseCausalSoftmaxWithGqa(DType cacheType) {
        runAttention(cacheType, 6, 2, 80, 16, 0,
                List.of(new Seq(37, 37), new Seq(50, 1), new Seq(10, 0), new Seq(20, 5), new Seq(129, 1)));
    }

    @Test
    void pagedAttentionHonoursTheSlidingWindow() {
        runAttention(DType.F32, 4, 4, 64, 8, 7, List.of(new Seq(30, 30), new Seq(45, 1)));
    }

    @Test
    void pagedAttentionHandlesLargeHeadsAndOneKvHead() {
        runAttention(DType.BF16, 8, 1, 256, 32, 0, List.of(new Seq(300, 3), new Seq(2, 2)));
    }

    /** A 16-bit cache and a flash head size, but no query run of a full tile: an F32 kernel, held to 1e-5. */
    @Test
    void shortQueryRunsStayInFloat32OnSixteenBitCaches() {
        withMmaDecode(false, () -> runAttention(DType.BF16, 32, 8, 128, 16, 0,
                List.of(new Seq(300, 63), new Seq(50, 1), new Seq(129, 1))));
    }

    // The split-context kernel (split_attention.cu): head sizes that are multiples of 32, no full query tile.
    // A lone long decode row is cut into many pieces that attention_combine merges; many rows run unsplit. These
    // cases run its float32 lane-per-key kernel; the tensor-core decode kernel's cases follow the flash ones.

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16", "BF16"})
    void splitAttentionMergesThePiecesOfALongContext(DType cacheType) {
        withMmaDecode(false, () -> splitting(() -> {
            runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(2048, 1)));
            runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(1000, 1), new Seq(37, 1), new Seq(513, 2), new Seq(5, 0)));
        }));
    }

    /** Runs {@code test} with context splitting allowed (up to 64 pieces, whatever the default). */
    private static void splitting(Runnable test) {
        int old = gpu.maxAttentionSplits(64);
        try {
            test.run();
        } finally {
            gpu.maxAttentionSplits(old);
        }
    }

    @Test
    void splitAttentionHonoursTheWindowInEveryPiece() {
        withMmaDecode(false, () -> splitting(() ->
                runAttention(DType.BF16, 8, 2, 64, 16, 100, List.of(new Seq(700, 1), new Seq(60, 3), new Seq(250, 1)))));
    }

    @Test
    void splitAttentionRunsUnsplitForManyRows() {
        List<Seq> seqs = new ArrayList<>();
        for (int i = 0; i < 80; i++) seqs.add(new Seq(1 + (i * 37) % 300, 1));
        withMmaDecode(false, () -> runAttention(DType.BF16, 32, 8, 128, 16, 0, seqs));
    }

    @ParameterizedTest
    @ValueSource(ints = {32, 96, 160, 224})
    void splitAttentionServesEveryHeadSizeOfItsKind(int headDim) {
        splitting(() -> runAttention(DType.F16, 6, 3, headDim, 8, 0, List.of(new Seq(333, 1), new Seq(20, 20), new Seq(64, 1))));
    }

    // The flash kernel (flash_attention.cu): 16-bit caches, headDim 64 or 128, some run of >= 64 query rows.

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void flashAttentionMatchesDenseSoftmaxOnLlamaShapes(DType cacheType) {
        // a whole prompt, and a 700-row chunk continuing a prefill whose first 300 tokens are cached
        withGroupedFlash(false, () -> runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(300, 300), new Seq(1000, 700))));
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void flashAttentionServesDecodeRowsBesideAPrefill(DType cacheType) {
        withGroupedFlash(false, () -> runAttention(cacheType, 32, 8, 128, 16, 0,
                List.of(new Seq(50, 1), new Seq(70, 70), new Seq(10, 0), new Seq(129, 1), new Seq(1, 1), new Seq(33, 1),
                        new Seq(40, 15), new Seq(60, 16))));  // the longest run the split kernel takes, the shortest flash takes
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void flashAttentionHonoursTheSlidingWindowAtHeadDim64(DType cacheType) {
        // windows longer and shorter than a 64-key tile; 200 and 90 rows are not multiples of 64
        withGroupedFlash(false, () -> {
            runAttention(cacheType, 8, 2, 64, 8, 100, List.of(new Seq(400, 200), new Seq(90, 90), new Seq(30, 1)));
            runAttention(cacheType, 8, 2, 64, 8, 20, List.of(new Seq(400, 200), new Seq(90, 90), new Seq(30, 1)));
        });
    }

    @Test
    void flashAttentionHandlesPartialTilesWithoutGrouping() {
        // 131 = 2 x 64 + 3 and 65 = 64 + 1 rows; one KV head per query head; 32-slot blocks
        runAttention(DType.BF16, 4, 4, 128, 32, 0, List.of(new Seq(150, 131), new Seq(64, 64), new Seq(200, 65)));
    }

    // The grouped-query flash kernel (CudaBackend.FLASH_GQA_PROPERTY, the default where heads per KV head are a
    // multiple of 4): the same cases and bounds, four query heads of one KV head per block over 32 rows (16 a warp under gqaWarpRows=16), 32-key
    // double-buffered tiles. The cases above run the plain kernel with it off.

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionMatchesDenseSoftmaxOnLlamaShapes(DType cacheType) {
        groupedFlash(() -> runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(300, 300), new Seq(1000, 700))));
        // the default: 32 rows a warp, on wgmma where the GPU is an sm_90
        assertThat(gpu.lastFlashKernel()).startsWith(gpu.wgmmaCapable() ? "flash_attention_gqa_wgo_" : "flash_attention_gqa_w32_");
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionServesDecodeRowsBesideAPrefill(DType cacheType) {
        groupedFlash(() -> runAttention(cacheType, 32, 8, 128, 16, 0,
                List.of(new Seq(50, 1), new Seq(70, 70), new Seq(10, 0), new Seq(129, 1), new Seq(1, 1), new Seq(33, 1),
                        new Seq(40, 15), new Seq(60, 16))));
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionHonoursTheSlidingWindowAtHeadDim64(DType cacheType) {
        groupedFlash(() -> {
            runAttention(cacheType, 8, 2, 64, 8, 100, List.of(new Seq(400, 200), new Seq(90, 90), new Seq(30, 1)));
            runAttention(cacheType, 8, 2, 64, 8, 20, List.of(new Seq(400, 200), new Seq(90, 90), new Seq(30, 1)));
        });
    }

    @Test
    void groupedFlashAttentionTakesGroupsOfEightAndPartialItems() {
        // 8 query heads per KV head: two blocks per KV head; 131 and 65 rows end in partial 32-row items;
        // 200 - 65 cached tokens before the 65-row chunk; 32-slot blocks
        groupedFlash(() -> runAttention(DType.BF16, 16, 2, 128, 32, 0,
                List.of(new Seq(150, 131), new Seq(64, 64), new Seq(200, 65))));
    }

    // The tensor-core decode kernel (split_attention_mma, CudaBackend.MMA_DECODE_PROPERTY): the split kernel's rows
    // on 16-bit caches of head size 64 or 128, the group's heads as the mma's rows, held to the flash bound.

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void tensorCoreDecodeMergesThePiecesOfALongContext(DType cacheType) {
        withMmaDecode(true, () -> splitting(() -> {
            assertThat(runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(2048, 1)))).matches("tensor cores, \\d+ pieces(, heads fastest)?");
            runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(1000, 1), new Seq(37, 1), new Seq(513, 2), new Seq(5, 0)));
        }));
    }

    /** One piece a row (the kernel writes the output itself, no merge), as enough rows would give on any GPU. */
    @Test
    void tensorCoreDecodeWritesUnsplitRowsItself() {
        List<Seq> seqs = new ArrayList<>();
        for (int i = 0; i < 80; i++) seqs.add(new Seq(1 + (i * 37) % 300, 1));
        int old = gpu.maxAttentionSplits(1);
        try {
            // (with -Dlathe.attention.headsFastest=true on the JVM, the grid order shows too)
            withMmaDecode(true, () -> assertThat(runAttention(DType.BF16, 32, 8, 128, 16, 0, seqs)).matches("tensor cores, 1 piece(, heads fastest)?"));
        } finally {
            gpu.maxAttentionSplits(old);
        }
    }

    @Test
    void tensorCoreDecodeHonoursTheWindowInEveryPieceAtHeadDim64() {
        withMmaDecode(true, () -> splitting(() ->
                runAttention(DType.BF16, 8, 2, 64, 16, 100, List.of(new Seq(700, 1), new Seq(60, 3), new Seq(250, 1)))));
    }

    @Test
    void tensorCoreDecodeTakesGroupsOfOneToSixteenAndOddBlockSizes() {
        // 16 query heads per KV head fill the mma's rows; 1 uses one of them; 24-slot blocks are not a power of two
        withMmaDecode(true, () -> splitting(() -> {
            runAttention(DType.BF16, 32, 2, 128, 24, 0, List.of(new Seq(777, 1), new Seq(3, 1), new Seq(100, 4)));
            runAttention(DType.F16, 4, 4, 64, 24, 0, List.of(new Seq(500, 1), new Seq(49, 2)));
        }));
    }

    @Test
    void tensorCoreDecodeServesShortRowsBesideAPrefill() {
        // the short query runs of a step the grouped flash kernel serves go to the tensor-core decode kernel
        withMmaDecode(true, () -> groupedFlash(() -> runAttention(DType.BF16, 32, 8, 128, 16, 0,
                List.of(new Seq(50, 1), new Seq(70, 70), new Seq(129, 1), new Seq(1, 1), new Seq(40, 15)))));
    }

    /** The split-context kernels with the KV head fastest in the grid (HEADS_FASTEST_PROPERTY): the same cases. */
    @Test
    void decodeKernelsServeAGridWithTheKvHeadFastest() {
        boolean old = gpu.headsFastest(true);
        try {
            for (boolean tensorCores : new boolean[]{true, false}) {
                withMmaDecode(tensorCores, () -> splitting(() -> {
                    assertThat(runAttention(DType.BF16, 32, 8, 128, 16, 0,
                            List.of(new Seq(1000, 1), new Seq(37, 1), new Seq(513, 2), new Seq(5, 0)))).endsWith("heads fastest");
                    runAttention(DType.F16, 8, 2, 64, 16, 100, List.of(new Seq(700, 1), new Seq(60, 3), new Seq(250, 1)));
                }));
            }
            // short rows beside a prefill (a row list), one piece each
            groupedFlash(() -> runAttention(DType.BF16, 32, 8, 128, 16, 0,
                    List.of(new Seq(50, 1), new Seq(70, 70), new Seq(129, 1), new Seq(40, 15))));
        } finally {
            gpu.headsFastest(old);
        }
    }

    @Test
    void groupsAboveSixteenStayOnTheFloat32Kernel() {
        withMmaDecode(true, () -> runAttention(DType.BF16, 32, 1, 64, 16, 0, List.of(new Seq(200, 1), new Seq(20, 2))));
    }

    /** Runs {@code test} with the tensor-core decode kernel on or off. */
    private static void withMmaDecode(boolean on, Runnable test) {
        boolean old = gpu.mmaDecode(on);
        try {
            test.run();
        } finally {
            gpu.mmaDecode(old);
        }
    }

    /** The grouped-query kernel over 64-key tiles (CudaBackend.FLASH_GQA_KEYS_PROPERTY), launched with 64 KB of dynamic shared memory at head size 128. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionOver64KeyTiles(DType cacheType) {
        onMmaSync(cacheType, 64, 32, "flash_attention_gqa_k64_");
    }

    /**
     * The grouped-query kernel with 16 query rows a warp (CudaBackend.FLASH_GQA_WARP_ROWS_PROPERTY 16; the other
     * grouped-query tests run the default, 32 rows a warp: two 16-row tiles, Q rows in shared memory).
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionWith16RowsAWarp(DType cacheType) {
        onMmaSync(cacheType, 32, 16, "flash_attention_gqa_" + cacheType.name().toLowerCase(java.util.Locale.ROOT) + "_d128");
    }

    /** 32 rows a warp on mma.sync (the default where the GPU is not an sm_90, and with gqaWgmma off on one). */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionOnMmaSyncAt32RowsAWarp(DType cacheType) {
        onMmaSync(cacheType, 32, 32, "flash_attention_gqa_w32_");
    }

    /** The variant cases on the mma.sync kernels (wgmma off) at those tile keys and warp rows, run by {@code kernel}. */
    private void onMmaSync(DType cacheType, int keys, int warpRows, String kernel) {
        onVariant(cacheType, false, false, keys, warpRows, kernel);
    }

    /**
     * The variant cases with S on wgmma or not, P V on wgmma or not, at those tile keys and warp rows, run by
     * {@code kernel}; the switches are put back after.
     */
    private void onVariant(DType cacheType, boolean wgmma, boolean pv, int keys, int warpRows, String kernel) {
        onVariant(cacheType, wgmma, pv, keys, warpRows, false, kernel);
    }

    /** As above, the overlapped kernel (CudaBackend.FLASH_GQA_OVERLAP_PROPERTY) on or off. */
    private void onVariant(DType cacheType, boolean wgmma, boolean pv, int keys, int warpRows, boolean overlap, String kernel) {
        boolean old = gpu.flashGqaWgmma(wgmma), oldPv = gpu.flashGqaWgmmaPv(pv), oldOverlap = gpu.flashGqaOverlap(overlap);
        int oldKeys = gpu.flashGqaKeys(keys), oldRows = gpu.flashGqaWarpRows(warpRows);
        try {
            groupedFlash(() -> groupedFlashVariantCases(cacheType));
            assertThat(gpu.lastFlashKernel()).startsWith(kernel);
        } finally {
            gpu.flashGqaWgmma(old);
            gpu.flashGqaWgmmaPv(oldPv);
            gpu.flashGqaOverlap(oldOverlap);
            gpu.flashGqaKeys(oldKeys);
            gpu.flashGqaWarpRows(oldRows);
        }
    }

    // The wgmma kernels (CudaBackend.FLASH_GQA_WGMMA_PROPERTY and FLASH_GQA_WGMMA_PV_PROPERTY), on an sm_90 GPU only.

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionWithSOnWgmma(DType cacheType) {
        onWgmma(cacheType, false, 32, 16, "flash_attention_gqa_wg_");
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionWithSAndPvOnWgmma(DType cacheType) {
        onWgmma(cacheType, true, 32, 16, "flash_attention_gqa_wgv_" + cacheType.name().toLowerCase(java.util.Locale.ROOT));
    }

    /** Both products at 32 rows a warp (the default warp rows): two 64-row tiles a block, Q in shared memory. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionOnWgmmaAt32RowsAWarp(DType cacheType) {
        onWgmma(cacheType, true, 32, 32, "flash_attention_gqa_wgv_w32_");
    }

    /** The overlapped kernel (CudaBackend.FLASH_GQA_OVERLAP_PROPERTY): softmax of a tile while P V of the one before runs. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionOnWgmmaOverlapped(DType cacheType) {
        org.junit.jupiter.api.Assumptions.assumeTrue(gpu.wgmmaCapable(), "wgmma needs an sm_90 GPU");
        onVariant(cacheType, true, true, 32, 32, true, "flash_attention_gqa_wgo_");
    }

    /**
     * The warp-specialised kernel (CudaBackend.FLASH_GQA_WARP_SPECIALIZED_PROPERTY): a loading warpgroup, two computing
     * ones, mbarriers between them; a wrong phase or a stage released early shows as wrong rows or a hang.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionWarpSpecialized(DType cacheType) {
        org.junit.jupiter.api.Assumptions.assumeTrue(gpu.wgmmaCapable(), "wgmma needs an sm_90 GPU");
        boolean old = gpu.flashGqaWarpSpecialized(true);
        try {
            onVariant(cacheType, true, true, 32, 32, true, "flash_attention_gqa_ws_");
        } finally {
            gpu.flashGqaWarpSpecialized(old);
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void groupedFlashAttentionOnWgmmaOver64KeyTiles(DType cacheType) {
        onWgmma(cacheType, true, 64, 32, "flash_attention_gqa_wgv_k64_");
    }

    /** The variant cases with S on wgmma (and P V with {@code pv}) at those tile keys and warp rows, run by {@code kernel}. */
    private void onWgmma(DType cacheType, boolean pv, int keys, int warpRows, String kernel) {
        org.junit.jupiter.api.Assumptions.assumeTrue(gpu.wgmmaCapable(), "wgmma needs an sm_90 GPU");
        onVariant(cacheType, true, pv, keys, warpRows, kernel);
    }

    /**
     * The shapes a grouped-query flash variant must get right: Llama's 32 heads over 8 KV heads, 131 and 65 rows (partial
     * items), 64 rows (one full tile), head size 64, sliding windows that start and end inside a tile, and short rows
     * beside a prefill.
     */
    private void groupedFlashVariantCases(DType cacheType) {
        runAttention(cacheType, 32, 8, 128, 16, 0, List.of(new Seq(300, 300), new Seq(1000, 700)));
        runAttention(cacheType, 16, 2, 128, 32, 0, List.of(new Seq(150, 131), new Seq(64, 64), new Seq(200, 65)));
        runAttention(cacheType, 8, 2, 64, 8, 20, List.of(new Seq(400, 200), new Seq(90, 90), new Seq(30, 1)));
        runAttention(cacheType, 8, 2, 128, 16, 100, List.of(new Seq(700, 300), new Seq(129, 129)));
        runAttention(cacheType, 32, 8, 128, 16, 0,
                List.of(new Seq(50, 1), new Seq(70, 70), new Seq(129, 1), new Seq(40, 15), new Seq(60, 16)));
    }

    @Test
    void groupedFlashTileKeysOtherThan32Or64AreRejected() {
        assertThatThrownBy(() -> gpu.flashGqaKeys(128)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("lathe.flash.gqaKeys is 128");
    }

    @Test
    void groupedFlashWarpRowsOtherThan16Or32AreRejected() {
        assertThatThrownBy(() -> gpu.flashGqaWarpRows(64)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("lathe.flash.gqaWarpRows is 64");
    }

    /** Runs {@code test} with the grouped-query flash kernel on. */
    private static void groupedFlash(Runnable test) { withGroupedFlash(true, test); }

    /** Runs {@code test} with the grouped-query flash kernel on or off. */
    private static void withGroupedFlash(boolean on, Runnable test) {
        boolean old = gpu.flashGqa(on);
        try {
            test.run();
        } finally {
            gpu.flashGqa(old);
        }
    }

    /** Checks one attention call against the dense reference; returns {@link CudaBackend#lastDecodeLaunch} of that call. */
    private String runAttention(DType cacheType, int heads, int kvHeads, int headDim, int blockSize, int window, List<Seq> seqs) {
        int numSeqs = seqs.size(), layers = 2, layer = 1;
        int maxBlocks = 0, totalBlocks = 0;
        for (Seq s : seqs) {
            int b = (s.context + blockSize - 1) / blockSize;
            maxBlocks = Math.max(maxBlocks, b);
            totalBlocks += b;
        }
        int numBlocks = totalBlocks + 3;
        // shuffled block ids, so logical order differs from physical order
        List<Integer> free = new ArrayList<>();
        for (int i = 0; i < numBlocks; i++) free.add(i);
        java.util.Collections.shuffle(free, random);
        int[] tables = new int[numSeqs * maxBlocks];
        Arrays.fill(tables, -1);
        int width = kvHeads * headDim, next = 0, numTokens = 0, ctxTokens = 0;
        for (int s = 0; s < numSeqs; s++) {
            for (int b = 0; b < (seqs.get(s).context + blockSize - 1) / blockSize; b++) tables[s * maxBlocks + b] = free.get(next++);
            numTokens += seqs.get(s).queries;
            ctxTokens += seqs.get(s).context;
        }
        // every context token's K and V, written in one writeKv call
        float[] k = normal(random, ctxTokens * width, 1f), v = normal(random, ctxTokens * width, 1f);
        int[] slots = new int[ctxTokens];
        int[] starts = new int[numSeqs + 1], lens = new int[numSeqs];
        for (int s = 0, t0 = 0; s < numSeqs; s++) {
            Seq q = seqs.get(s);
            for (int t = 0; t < q.context; t++) slots[t0 + t] = tables[s * maxBlocks + t / blockSize] * blockSize + t % blockSize;
            t0 += q.context;
            starts[s + 1] = starts[s] + q.queries;
            lens[s] = q.context;
        }
        float[] q = normal(random, numTokens * heads * headDim, 1f);
        float scale = (float) (1 / Math.sqrt(headDim));
        try (KvCache cache = gpu.allocateKvCache(layers, numBlocks, blockSize, kvHeads, headDim, cacheType);
             Tensor kt = gpu.upload(k, ctxTokens, width); Tensor vt = gpu.upload(v, ctxTokens, width);
             Tensor slotT = gpu.upload(slots, 1, ctxTokens); Tensor qt = gpu.upload(q, numTokens, heads * headDim);
             Tensor out = poisoned(numTokens, heads * headDim);
             AttentionMetadata meta = new AttentionMetadata(numSeqs, numTokens, Arrays.stream(lens).max().orElse(0),
                     gpu.upload(starts, 1, numSeqs + 1), gpu.upload(lens, 1, numSeqs), gpu.upload(tables, numSeqs, maxBlocks),
                     gpu.upload(new int[numTokens], 1, numTokens), starts, lens, window)) {
            gpu.writeKv(cache, layer, kt, vt, slotT);
            gpu.attention(qt, cache, layer, meta, scale, out);
            String launch = gpu.lastDecodeLaunch();
            int longest = 0;
            for (Seq sq : seqs) longest = Math.max(longest, sq.queries);
            // CudaBackend's dispatch rule, restated: the flash kernel for 16-bit caches of head size 64 or 128
            // when some sequence has a full tile of query rows; in such a step, sequences of at most
            // SPLIT_MAX_QUERY_RUN rows go to the split kernel
            boolean flash = (cacheType == DType.BF16 || cacheType == DType.F16) && (headDim == 64 || headDim == 128)
                    && longest >= CudaBackend.FLASH_MIN_QUERY_ROWS;
            // and the split kernel's rows run on tensor cores (split_attention_mma) with the flash kernels' numbers
            // where that is on, the cache 16-bit, the head size 64 or 128 and a KV head serves at most 16 query heads
            boolean mmaRows = gpu.mmaDecode() && (cacheType == DType.BF16 || cacheType == DType.F16)
                    && (headDim == 64 || headDim == 128) && heads / kvHeads <= CudaBackend.MMA_DECODE_MAX_GROUP;
            // The flash kernel rounds q to the cache type by design, as the cache rounds K and V: the reference
            // takes the same rounded q for its rows (and the cache-rounded K, V) and is otherwise exact.
            float[] qRounded = round(cacheType, q), kq = round(cacheType, k), vq = round(cacheType, v);
            float[] want = new float[q.length];
            double[] tol = new double[q.length];
            boolean[] flashRow = new boolean[numTokens];
            for (int s = 0, t0 = 0; s < numSeqs; s++) {
                Seq sq = seqs.get(s);
                boolean flashSeq = flash && sq.queries > CudaBackend.SPLIT_MAX_QUERY_RUN;
                boolean tensorCores = flashSeq || mmaRows;
                float[] qq = tensorCores ? qRounded : q;
                for (int i = 0; i < sq.queries; i++) flashRow[starts[s] + i] = flashSeq;
                // every (row, head) on its own: the float64 reference of the long cases dominates the GPU suite's time,
                // so it runs on all cores
                final int seqStart = starts[s], kv0 = t0;
                java.util.stream.IntStream.range(0, sq.queries * heads).parallel().forEach(task -> {
                    int i = task / heads, h = task % heads;
                    int row = seqStart + i, pos = sq.context - sq.queries + i;
                    int first = window > 0 ? Math.max(0, pos - window + 1) : 0;
                    int n = pos - first + 1;
                    int kvh = h / (heads / kvHeads);
                    double[] score = new double[n];
                    double max = Double.NEGATIVE_INFINITY, sigma = 0;
                    for (int t = first; t <= pos; t++) {
                        double dot = 0, abs = 0;
                        for (int d = 0; d < headDim; d++) {
                            double term = (double) qq[(row * heads + h) * headDim + d] * kq[(kv0 + t) * width + kvh * headDim + d];
                            dot += term;
                            abs += Math.abs(term);
                        }
                        score[t - first] = dot * scale;
                        sigma = Math.max(sigma, abs * scale);
                        max = Math.max(max, score[t - first]);
                    }
                    double sum = 0;
                    for (int t = 0; t < n; t++) sum += score[t] = Math.exp(score[t] - max);
                    for (int d = 0; d < headDim; d++) {
                        double acc = 0, absAcc = 0, absV = 0;
                        for (int t = first; t <= pos; t++) {
                            double vv = vq[(kv0 + t) * width + kvh * headDim + d];
                            acc += score[t - first] * vv;
                            absAcc += score[t - first] * Math.abs(vv);
                            absV += Math.abs(vv);
                        }
                        int at = (row * heads + h) * headDim + d;
                        want[at] = (float) (acc / sum);
                        if (tensorCores) tol[at] = flashTolerance(cacheType, headDim, n, sigma, absAcc / sum, absV / sum);
                    }
                });
                t0 += sq.context;
            }
            String what = "attention " + cacheType + " headDim " + headDim + " window " + window + (flash ? " (flash)" : "")
                    + (mmaRows ? " (tensor-core decode)" : "") + " seed " + seed;
            // the rows the split-context kernel takes ran on the kernel the rule above names
            boolean splitRows = seqs.stream().anyMatch(sq -> sq.queries > 0 && (!flash || sq.queries <= CudaBackend.SPLIT_MAX_QUERY_RUN));
            if (headDim % 32 == 0 && splitRows) {
                assertThat(launch).as(what + ": decode kernel").startsWith(mmaRows ? "tensor cores" : "float32");
            }
            float[] got = gpu.download(out);
            attentionWritesTheGemmFormatAsItsRounding(what, qt, cache, layer, meta, scale, got, cacheType);
            if (!flash) {
                if (mmaRows) assertWithin(what, got, want, tol);
                else assertClose(what, got, want, 1e-5);
                return launch;
            }
            // the flash kernel's rows against its derived bound, the split kernel's rows (float32) as above
            int rowWidth = heads * headDim;
            float[] gotFlash = new float[q.length], wantFlash = new float[q.length], gotSplit = new float[q.length],
                    wantSplit = new float[q.length];
            double[] tolFlash = new double[q.length];
            int nf = 0, ns = 0;
            for (int r = 0; r < numTokens; r++) {
                if (flashRow[r]) {
                    System.arraycopy(got, r * rowWidth, gotFlash, nf, rowWidth);
                    System.arraycopy(want, r * rowWidth, wantFlash, nf, rowWidth);
                    System.arraycopy(tol, r * rowWidth, tolFlash, nf, rowWidth);
                    nf += rowWidth;
                } else {
                    System.arraycopy(got, r * rowWidth, gotSplit, ns, rowWidth);
                    System.arraycopy(want, r * rowWidth, wantSplit, ns, rowWidth);
                    ns += rowWidth;
                }
            }
            assertWithin(what, Arrays.copyOf(gotFlash, nf), Arrays.copyOf(wantFlash, nf), Arrays.copyOf(tolFlash, nf));
            if (ns > 0 && mmaRows) {
                double[] tolSplit = new double[q.length];
                for (int r = 0, at = 0; r < numTokens; r++) {
                    if (!flashRow[r]) {
                        System.arraycopy(tol, r * rowWidth, tolSplit, at, rowWidth);
                        at += rowWidth;
                    }
                }
                assertWithin(what + ", short query runs (tensor-core split kernel)", Arrays.copyOf(gotSplit, ns),
                        Arrays.copyOf(wantSplit, ns), Arrays.copyOf(tolSplit, ns));
            } else if (ns > 0) {
                assertClose(what + ", short query runs (split kernel)", Arrays.copyOf(gotSplit, ns), Arrays.copyOf(wantSplit, ns), 1e-5);
            }
            // every layer of a step reuses the metadata, and with it the work list uploaded for the first
            try (Tensor again = poisoned(numTokens, heads * headDim)) {
                gpu.attention(qt, cache, layer, meta, scale, again);
                // bit for bit; (AssertJ's containsExactly diffs the arrays as lists first: quadratic at 4M values)
                float[] second = gpu.download(again);
                int firstDiff = Arrays.mismatch(second, got);
                assertThat(firstDiff).as(what + ": second call with the same metadata differs first at element %d", firstDiff)
                        .isEqualTo(-1);
            }
            return launch;
        }
    }

    /**
     * The same attention into a 16-bit output (the o projection's input format, Backend.activationFormat): the float32
     * result rounded to nearest even, bit for bit, on every path (flash, grouped flash, split, combine, row per
     * block). The 16-bit format is the cache's where it has one, the flash kernels' only 16-bit output.
     */
    private void attentionWritesTheGemmFormatAsItsRounding(String what, Tensor qt, KvCache cache, int layer, AttentionMetadata meta,
                                                          float scale, float[] got, DType cacheType) {
        // the cache's own format (or BF16 for a float32 cache), then the other 16-bit format: an F16 model over a
        // BF16 cache, whose flash output is rounded after
        DType format = cacheType == DType.F16 ? DType.F16 : DType.BF16;
        for (DType f : cacheType == DType.F32 ? List.of(format) : List.of(format, format == DType.F16 ? DType.BF16 : DType.F16)) {
            try (Tensor out16 = gpu.allocate(f, qt.rows(), qt.cols())) {
                gpu.attention(qt, cache, layer, meta, scale, out16);
                float[] want = round(f, got), have = gpu.download16(out16);
                int firstDiff = Arrays.mismatch(have, want);
                assertThat(firstDiff).as("%s: %s output against the float32 output rounded, first difference at %d", what, f, firstDiff)
                        .isEqualTo(-1);
            }
        }
    }

    /*
     * How far the flash kernel may be from the reference, for one output element o_d of one (row, head).
     * Derived from the kernel's arithmetic, before any GPU result was seen; not to be widened to fit one.
     *
     * The reference is exact given the inputs the kernel sees: q rounded to the cache type (q^), K and V as
     * cached. With weights w_j = e_j / Z, e_j = exp(s_j - max), Z = sum_j e_j, and s_j = scale * q^.k_j:
     *
     * 1. The softmax weights are rounded to the cache type before P V (round to nearest, unit roundoff
     *    u = 2^-8 for BF16, 2^-11 for F16): each p_j gains a relative error of at most u, so o_d moves by at
     *    most u * sum_j w_j |v_jd| = u * A_d. F16 has subnormals below 2^-14, where the error is absolute,
     *    at most half the spacing 2^-25 (measured on the kernel's running-max scale, which only shrinks
     *    afterwards): up to 2^-25 * sum_j |v_jd| / Z more. (BF16 has F32's exponent range: nothing.)
     * 2. The scores in F32: q^_d k_jd is exact in F32 (two 8- or 11-bit significands); summing headDim of
     *    them on the tensor cores (truncation allowed: unit 2^-23 per add) errs by at most
     *    headDim * 2^-23 * scale * sum_d |q^_d k_jd| <= headDim * 2^-23 * sigma, sigma the largest such sum
     *    over the row's keys; scaling by log2(e), subtracting the running max and exp2f (2 ulp) add a few
     *    units of 2^-23 relative on top: delta = (headDim + 8) * 2^-23 * sigma + 2^-20 bounds the error of
     *    every exponent. Weights e^(s + eps) / sum e^(s + eps) with |eps| <= delta stay within a factor
     *    e^(2 delta) of w_j, so o_d moves by at most (e^(2 delta) - 1) * A_d.
     * 3. Sums in F32: O accumulates n products (mma, F32) and is rescaled once per key tile (64 keys; 32 in the
     *    grouped-query kernel, at most n/32 + 2 rescales), the row sum
     *    l likewise; each is off by at most (n + n/32 + 8) * 2^-23 relative to its sum of magnitudes, which
     *    for O is A_d * l and for l is l: together at most 2 * (n + n/32 + 8) * 2^-23 * A_d, and the final
     *    division 2^-24 |o_d| <= 2^-24 A_d.
     * 4. The tensor-core decode kernel (split_attention_mma) runs the same tile steps on 32-key tiles, over
     *    pieces of at least 32 keys when the context is split; attention_combine then merges the pieces. Each
     *    piece has its own running max m_p, stored in natural-log units (m_p * ln 2: one more rounding of an
     *    exponent of size at most sigma, inside the 8 spare units of 2.) and weighted by expf(m_p - M) (2 ulp,
     *    inside 2.'s 2^-20); merging is one more rescale and add of O and of l per piece, at most n/32 more
     *    than 3. counts.
     *
     * tol = A_d * (u + e^(2 delta) - 1 + 2^-22 * (n + 2 n/32 + 9)) + [F16] 2^-25 * sum_j |v_jd| / Z + 1e-6,
     * the last term for anything smaller that was missed (BF16/F32 underflow of far-below-max weights).
     */
    private static double flashTolerance(DType cacheType, int headDim, int keys, double sigma, double weightedAbsV,
                                         double absVOverZ) {
        double u = cacheType == DType.BF16 ? 0x1p-8 : 0x1p-11;
        double delta = (headDim + 8) * 0x1p-23 * sigma + 0x1p-20;
        double f32Sums = 0x1p-22 * (keys + 2 * keys / 32.0 + 9);
        double subnormal = cacheType == DType.F16 ? 0x1p-25 * absVOverZ : 0;
        return weightedAbsV * (u + Math.expm1(2 * delta) + f32Sums) + subnormal + 1e-6;
    }

    /** No NaN, and |got - want| <= tol elementwise. */
    private static void assertWithin(String what, float[] got, float[] want, double[] tol) {
        assertThat(got).as(what + ": length").hasSize(want.length);
        int worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < got.length; i++) {
            if (Float.isNaN(got[i])) fail(what + ": element " + i + " is NaN where " + want[i] + " was expected");
            double ratio = Math.abs(got[i] - (double) want[i]) / tol[i];
            if (ratio > worstRatio) {
                worstRatio = ratio;
                worst = i;
            }
        }
        System.out.printf("%s: largest error is %.3f of its bound%n", what, worstRatio);
        if (worstRatio > 1) {
            fail(String.format("%s: element %d: got %s, want %s, tolerance %.3g (%.2f x)", what,
                    worst, got[worst], want[worst], tol[worst], worstRatio));
        }
    }

    private static int[] iota(int n) {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) a[i] = i;
        return a;
    }
}
