package dev.lathe.cuda;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/** Host-side helpers for the GPU tests: storage rounding, random data, and the closeness check. */
final class Host {
    private Host() {}

    static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) ((bits >>> 16) | 0x0040);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    static float fromBf16(short s) { return Float.intBitsToFloat(s << 16); }

    /** The value a weight of {@code dtype} holds for {@code f}. */
    static float round(DType dtype, float f) {
        return switch (dtype) {
            case BF16 -> fromBf16(toBf16(f));
            case F16 -> Float.float16ToFloat(Float.floatToFloat16(f));
            default -> f;
        };
    }

    static float[] round(DType dtype, float[] v) {
        float[] r = new float[v.length];
        for (int i = 0; i < v.length; i++) r[i] = round(dtype, v[i]);
        return r;
    }

    /** A checkpoint tensor of {@code dtype} holding {@code values} (rounded), shape {@code shape}. */
    static WeightTensor weight(String name, DType dtype, float[] values, long... shape) {
        MemorySegment data = switch (dtype) {
            case BF16 -> {
                short[] s = new short[values.length];
                for (int i = 0; i < s.length; i++) s[i] = toBf16(values[i]);
                yield MemorySegment.ofArray(s);
            }
            case F16 -> {
                short[] s = new short[values.length];
                for (int i = 0; i < s.length; i++) s[i] = Float.floatToFloat16(values[i]);
                yield MemorySegment.ofArray(s);
            }
            case F32 -> MemorySegment.ofArray(values.clone());
            default -> throw new IllegalArgumentException(dtype.toString());
        };
        return new WeightTensor(name, dtype, shape, data);
    }

    static float[] normal(Random r, int n, float std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (r.nextGaussian() * std);
        return v;
    }

    /** The index of the largest value, the lowest on ties. */
    static int argmax(float[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    /** {@code [cos, sin]} of n * half random angles in [-10, 10): rotary table rows for the rope tests. */
    static float[][] rotaryRows(Random r, int n, int half) {
        float[] cos = new float[n * half], sin = new float[n * half];
        for (int i = 0; i < cos.length; i++) {
            double angle = r.nextDouble() * 20 - 10;
            cos[i] = (float) Math.cos(angle);
            sin[i] = (float) Math.sin(angle);
        }
        return new float[][]{cos, sin};
    }

    static float[] nans(int n) {
        float[] v = new float[n];
        Arrays.fill(v, Float.NaN);
        return v;
    }

    /** No NaN anywhere (so every element was written) and ||got - want|| / ||want|| <= tol. */
    static void assertClose(String what, float[] got, float[] want, double tol) {
        assertThat(got).as(what + ": length").hasSize(want.length);
        double diff = 0, norm = 0, maxAbs = 0;
        int worst = -1;
        for (int i = 0; i < got.length; i++) {
            if (Float.isNaN(got[i])) fail(what + ": element " + i + " is NaN (not written?) where " + want[i] + " was expected");
            double d = got[i] - (double) want[i];
            diff += d * d;
            norm += (double) want[i] * want[i];
            if (Math.abs(d) > maxAbs) {
                maxAbs = Math.abs(d);
                worst = i;
            }
        }
        double rel = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
        if (rel > tol) {
            fail(String.format("%s: relative error %.3g > %.3g; worst element %d: got %s, want %s", what, rel, tol, worst,
                    got[worst], want[worst]));
        }
    }
}
