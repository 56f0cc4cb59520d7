package dev.lathe.cpu;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.RopeScaling;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.fail;

/** Test inputs: logged seeds, values exactly representable in a weight format, weights in a segment. */
final class Fixtures {
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Fixtures() {}

    /** A tiny Llama (vocab 97, hidden 48, 2 layers, 4 heads over 2 KV heads of 16) with the given biases and q/k norms. */
    static ModelConfig tinyLlama(boolean attentionBias, boolean mlpBias, boolean qkNorm) {
        return new ModelConfig("LlamaForCausalLM", "llama", 97, 48, 80, 2, 4, 2, 16, 64, 1e-5, 10000, RopeScaling.NONE,
                false, attentionBias, mlpBias, qkNorm, 0, 1, List.of(2), "bfloat16");
    }

    /** The logits of every prompt position, in one step, from synthetic BF16 weights of seed 7 over {@code backend}. */
    static float[] promptLogits(Backend backend, ModelConfig config, int[] prompt) {
        try (LlamaModel model = ModelLoader.synthetic(config, backend, DType.BF16, 7, LoadProgress.NONE);
             var r = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(64, 4, 4, DType.F32))) {
            return r.step(List.of(new Sequence(0, prompt)), new int[]{prompt.length}, true).data();
        }
    }

    /** A random source whose seed is printed; {@code -Dlathe.test.seed=N} replays a failure. */
    static Random random(String test) {
        long seed = Long.getLong("lathe.test.seed", System.nanoTime());
        System.out.println(test + ": seed " + seed + " (replay with -Dlathe.test.seed=" + seed + ")");
        return new Random(seed);
    }

    static float[] normals(Random rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) rnd.nextGaussian();
        return v;
    }

    static float[] nans(int n) {
        float[] v = new float[n];
        Arrays.fill(v, Float.NaN);
        return v;
    }

    /** Normal values made exactly representable in {@code dtype}, so the oracle sees the stored numbers. */
    static float[] weightValues(Random rnd, DType dtype, int n) {
        float[] v = normals(rnd, n);
        for (int i = 0; i < n; i++) v[i] = representable(dtype, v[i]);
        return v;
    }

    static float representable(DType dtype, float x) {
        return switch (dtype) {
            case F32 -> x;
            case BF16 -> Float.intBitsToFloat(Float.floatToRawIntBits(x) & 0xFFFF0000);
            case F16 -> Float.float16ToFloat(Float.floatToFloat16(x));
            default -> throw new IllegalArgumentException(dtype.toString());
        };
    }

    /**
     * A checkpoint tensor holding {@code values} (already representable) in {@code dtype}, in a fresh
     * segment that starts {@code misalign} bytes into its allocation (mapped files give no alignment).
     */
    static WeightTensor misaligned(String name, DType dtype, float[] values, int misalign, long... shape) {
        MemorySegment seg = Arena.ofAuto().allocate((long) values.length * dtype.byteSize() + misalign, 64)
                .asSlice(misalign, (long) values.length * dtype.byteSize());
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> seg.set(FLOAT, 4L * i, values[i]);
                case BF16 -> seg.set(SHORT, 2L * i, (short) (Float.floatToRawIntBits(values[i]) >>> 16));
                case F16 -> seg.set(SHORT, 2L * i, Float.floatToFloat16(values[i]));
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new WeightTensor(name, dtype, shape, seg);
    }

    static WeightTensor weight(String name, DType dtype, float[] values, long... shape) {
        return misaligned(name, dtype, values, 0, shape);
    }

    /**
     * Every element within {@code tol[i]} of the oracle. NaN (an element the op never wrote, since
     * outputs are poisoned with NaN) always fails.
     */
    static void assertClose(String what, float[] got, double[] want, double[] tol) {
        if (got.length != want.length) fail(what + ": " + got.length + " values, expected " + want.length);
        for (int i = 0; i < got.length; i++) {
            if (!(Math.abs(got[i] - want[i]) <= tol[i])) {
                fail(what + ": element " + i + " is " + got[i] + ", oracle " + want[i] + " (tolerance " + tol[i] + ")");
            }
        }
    }

    /**
     * Relative tolerance for results that are not long sums (norms, rope, silu, softmax outputs): a
     * few float32 roundings of values of order one, each at most 2^-24 ~ 6e-8 relative, plus float
     * versions of sqrt/exp, stay far below 1e-5; 1e-4 leaves room without hiding a wrong index.
     */
    static void assertRelative(String what, float[] got, double[] want) {
        double[] tol = new double[want.length];
        for (int i = 0; i < tol.length; i++) tol[i] = 1e-4 * Math.max(1.0, Math.abs(want[i]));
        assertClose(what, got, want, tol);
    }
}
