package dev.lathe.cpu;

import dev.lathe.core.backend.BackendProvider;
import dev.lathe.core.backend.SeededRandom;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Random;
import java.util.ServiceLoader;

import static dev.lathe.cpu.Fixtures.nans;
import static dev.lathe.cpu.Fixtures.normals;
import static dev.lathe.cpu.Fixtures.weight;
import static dev.lathe.cpu.Fixtures.weightValues;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** Weight formats, fused and generated weights, and the provider. */
class WeightsTest {
    private static final CpuBackend backend = new CpuBackend(2);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @AfterAll
    static void closeBackend() { backend.close(); }

    /** All rows of a weight, read back through embedding. */
    static float[] readBack(Weight w) {
        int[] ids = new int[w.rows()];
        for (int i = 0; i < ids.length; i++) ids[i] = i;
        try (Tensor it = backend.upload(ids, 1, ids.length);
             Tensor ot = backend.upload(nans(w.rows() * w.cols()), w.rows(), w.cols())) {
            backend.embedding(w, it, ot);
            return backend.download(ot);
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"BF16", "F16"})
    void everyHalfPrecisionBitPatternWidensExactly(DType dtype) {
        // 65,536 patterns as one [256, 256] weight: the vector path and the scalar tail both see them
        MemorySegment seg = Arena.ofAuto().allocate(2 * 65536);
        for (int i = 0; i < 65536; i++) seg.set(SHORT, 2L * i, (short) i);
        float[] got = readBack(backend.load(new WeightTensor("all", dtype, new long[]{256, 256}, seg)));
        for (int i = 0; i < 65536; i++) {
            float want = dtype == DType.BF16 ? Float.intBitsToFloat(i << 16) : Float.float16ToFloat((short) i);
            if (Float.isNaN(want)) {
                assertThat(got[i]).as("pattern %04x", i).isNaN();
            } else {
                assertThat(Float.floatToRawIntBits(got[i])).as("pattern %04x", i).isEqualTo(Float.floatToRawIntBits(want));
            }
        }
    }

    @Test
    void loadReadsTheCheckpointBytesInPlace() {
        MemorySegment seg = Arena.ofAuto().allocate(2 * 6);
        WeightTensor t = new WeightTensor("w", DType.BF16, new long[]{2, 3}, seg);
        Weight w = backend.load(t);
        seg.set(SHORT, 2L * 4, (short) (Float.floatToRawIntBits(2.5f) >>> 16)); // after load
        assertThat(readBack(w)).containsExactly(0, 0, 0, 0, 2.5f, 0);
        assertThat(w.rows()).isEqualTo(2);
        assertThat(w.cols()).isEqualTo(3);
    }

    @Test
    void oneDimensionalTensorBecomesOneRow() {
        Weight w = backend.load(weight("b", DType.F32, new float[]{1, 2, 3}, 3));
        assertThat(new int[]{w.rows(), w.cols()}).containsExactly(1, 3);
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void fusedWeightEqualsItsPartsStacked(DType dtype) {
        Random rnd = Fixtures.random("fused " + dtype);
        int in = 67, n = 5;
        int[] rows = {24, 8, 8};
        float[][] parts = new float[rows.length][];
        List<WeightTensor> tensors = new java.util.ArrayList<>();
        for (int p = 0; p < rows.length; p++) {
            parts[p] = weightValues(rnd, dtype, rows[p] * in);
            tensors.add(Fixtures.misaligned("part" + p, dtype, parts[p], p, rows[p], in));
        }
        float[] x = normals(rnd, n * in);
        Weight fused = backend.loadFused("qkv", tensors);
        assertThat(fused.rows()).isEqualTo(40);
        try (Tensor xt = backend.upload(x, n, in);
             Tensor ot = backend.upload(nans(n * 40), n, 40)) {
            backend.linear(xt, fused, null, ot);
            float[] got = backend.download(ot);
            int col = 0;
            for (int p = 0; p < rows.length; p++) {
                try (Weight single = backend.load(tensors.get(p));
                     Tensor st = backend.upload(nans(n * rows[p]), n, rows[p])) {
                    backend.linear(xt, single, null, st);
                    float[] alone = backend.download(st);
                    for (int t = 0; t < n; t++) {
                        for (int j = 0; j < rows[p]; j++) {
                            assertThat(got[t * 40 + col + j]).isEqualTo(alone[t * rows[p] + j]);
                        }
                    }
                }
                col += rows[p];
            }
        }
    }

    @Test
    void fusedPartsMustAgreeOnDtypeAndColumns() {
        var a = weight("q", DType.BF16, new float[4 * 3], 4, 3);
        var b = weight("k", DType.BF16, new float[2 * 5], 2, 5);
        assertThatThrownBy(() -> backend.loadFused("qkv", List.of(a, b)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("'k'").hasMessageContaining("qkv");
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void randomIsTheSeededNormalRoundedToTheDtype(DType dtype) {
        int rows = 256, cols = 515;
        long seed = 1234;
        float mean = 0.5f, std = 0.02f;
        Weight w = backend.random("r", dtype, rows, cols, seed, mean, std);
        float[] got = readBack(w);
        // the element at (r, c) is the counter-based normal of index r * cols + c
        for (int i : new int[]{0, 1, cols, 77 * cols + 300, rows * cols - 1}) {
            float exact = mean + std * SeededRandom.normal(seed, i);
            assertThat(got[i]).as("element %d", i).isEqualTo(nearest(dtype, exact));
        }
        assertThat(readBack(backend.random("r", dtype, rows, cols, seed, mean, std))).containsExactly(got);
        assertThat(readBack(backend.random("r", dtype, rows, cols, seed + 1, mean, std))).isNotEqualTo(got);
        double sum = 0, sq = 0;
        for (float v : got) sum += v;
        double m = sum / got.length;
        for (float v : got) sq += (v - m) * (v - m);
        // 131,840 samples: the mean's standard error is std / 363, the std's about std / 513
        assertThat(m).isCloseTo(mean, within(5.0 * std / 363));
        assertThat(Math.sqrt(sq / got.length)).isCloseTo(std, within(0.03 * std));
        w.close();
        w.close(); // idempotent, as for tied embeddings
    }

    /** Round to nearest, ties to even, from the two neighbouring representable values. */
    private static float nearest(DType dtype, float x) {
        if (dtype == DType.F32) return x;
        if (dtype == DType.F16) return Float.float16ToFloat(Float.floatToFloat16(x));
        int bits = Float.floatToRawIntBits(x);
        float lo = Float.intBitsToFloat(bits & 0xFFFF0000), hi = Float.intBitsToFloat((bits & 0xFFFF0000) + 0x10000);
        double dLo = Math.abs((double) x - lo), dHi = Math.abs((double) hi - x);
        return dLo < dHi ? lo : dHi < dLo ? hi : ((bits >>> 16) & 1) == 0 ? lo : hi;
    }

    @Test
    void bf16RoundingBreaksTiesToEven() {
        float even = Float.intBitsToFloat(0x3F80_0000 | 0x8000); // exactly between 0x3F80 and 0x3F81
        float odd = Float.intBitsToFloat(0x3F81_0000 | 0x8000);  // between 0x3F81 and 0x3F82
        assertThat(Bf16Format.fromFloat(even)).isEqualTo((short) 0x3F80);
        assertThat(Bf16Format.fromFloat(odd)).isEqualTo((short) 0x3F82);
        assertThat(Bf16Format.toFloat(Bf16Format.fromFloat(Float.NaN))).isNaN();
    }

    @Test
    void providerIsFoundThroughServiceLoader() {
        BackendProvider cpu = ServiceLoader.load(BackendProvider.class).stream().map(ServiceLoader.Provider::get)
                .filter(p -> p.name().equals("cpu")).findFirst().orElseThrow();
        assertThat(cpu.priority()).isZero();
        assertThat(cpu.unavailableReason()).isEmpty();
        try (var b = cpu.create(0)) {
            assertThat(b.name()).isEqualTo("cpu");
            assertThat(((CpuBackend) b).threads()).isEqualTo(Runtime.getRuntime().availableProcessors());
        }
    }

    @Test
    void failureInAWorkerChunkReachesTheCaller() {
        try (var pool = new WorkerPool(3)) {
            assertThatThrownBy(() -> pool.forRange(300, 1, (a, b) -> {
                if (a > 0) throw new IllegalStateException("chunk " + a);
            })).isInstanceOf(IllegalStateException.class).hasMessageStartingWith("chunk ");
        }
    }
}
