package dev.lathe.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/** Float32 vector loops over heap arrays shared by the ops. */
final class VectorMath {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    /** HALVES[k]: lane i takes lane i + (L >> (k + 1)) (mod L), for the fixed-order lane sum. */
    private static final VectorShuffle<Float>[] HALVES = halves();

    private VectorMath() {}

    @SuppressWarnings("unchecked")
    private static VectorShuffle<Float>[] halves() {
        int l = F.length(), steps = Integer.numberOfTrailingZeros(l);
        VectorShuffle<Float>[] out = new VectorShuffle[steps];
        for (int k = 0; k < steps; k++) {
            int shift = l >> (k + 1);
            out[k] = VectorShuffle.fromOp(F, i -> (i + shift) % l);
        }
        return out;
    }

    /**
     * The sum of v's lanes in one fixed order (halves added lane by lane, then halves of those, down to lane 0), so
     * that a result does not depend on how the JIT compiled the caller: reduceLanes(ADD) leaves the order open for
     * floats, and C2's order and the interpreter's differ. Interpreted, one model step then gave other bits than the
     * same step compiled.
     */
    static float sum(FloatVector v) {
        for (VectorShuffle<Float> h : HALVES) v = v.add(v.rearrange(h));
        return v.lane(0);
    }

    /** {@code sum_i a[aOff + i] * b[bOff + i]}, accumulated in float32. */
    static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        int l = F.length();
        FloatVector s0 = FloatVector.zero(F), s1 = s0;
        int i = 0;
        for (; i + 2 * l <= n; i += 2 * l) {
            s0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), s0);
            s1 = FloatVector.fromArray(F, a, aOff + i + l).fma(FloatVector.fromArray(F, b, bOff + i + l), s1);
        }
        for (; i + l <= n; i += l) {
            s0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), s0);
        }
        float r = sum(s0.add(s1));
        for (; i < n; i++) r += a[aOff + i] * b[bOff + i];
        return r;
    }

    /** {@code acc[0..n) += a * x[xOff..xOff + n)}. */
    static void axpy(float a, float[] x, int xOff, float[] acc, int n) {
        int l = F.length();
        FloatVector av = FloatVector.broadcast(F, a);
        int i = 0;
        for (; i + l <= n; i += l) {
            FloatVector.fromArray(F, x, xOff + i).fma(av, FloatVector.fromArray(F, acc, i)).intoArray(acc, i);
        }
        for (; i < n; i++) acc[i] += a * x[xOff + i];
    }
}
