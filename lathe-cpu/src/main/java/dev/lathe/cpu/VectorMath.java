package dev.lathe.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Float32 vector loops over heap arrays shared by the ops. */
final class VectorMath {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private VectorMath() {}

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
        float r = s0.add(s1).reduceLanes(VectorOperators.ADD);
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
