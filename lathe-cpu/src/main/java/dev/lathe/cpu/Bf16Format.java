package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** bfloat16 weights: the top 16 bits of a float32, widened by a shift. */
final class Bf16Format implements WeightFormat {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> I = F.withLanes(int.class);
    // as many shorts as F has floats, in half the bits
    private static final VectorSpecies<Short> S =
            VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);

    @Override
    public DType dtype() { return DType.BF16; }

    static float toFloat(short bits) {
        return Float.intBitsToFloat(bits << 16);
    }

    /** Round-to-nearest-even float32 to bfloat16; NaN stays a (quiet) NaN. */
    static short fromFloat(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) ((bits >>> 16) | 0x0040);
        int rounding = 0x7FFF + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    private static FloatVector load(MemorySegment w, long off) {
        // sign extension by S2I is harmless: the shift pushes those bits out
        return ((IntVector) ShortVector.fromMemorySegment(S, w, off, LE).convertShape(VectorOperators.S2I, I, 0))
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    @Override
    public float dot(MemorySegment w, long wOff, float[] x, int xOff, int n) {
        int l = F.length();
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 4 * l <= n; i += 4 * l) {
            long o = wOff + 2L * i;
            a0 = load(w, o).fma(FloatVector.fromArray(F, x, xOff + i), a0);
            a1 = load(w, o + 2L * l).fma(FloatVector.fromArray(F, x, xOff + i + l), a1);
            a2 = load(w, o + 4L * l).fma(FloatVector.fromArray(F, x, xOff + i + 2 * l), a2);
            a3 = load(w, o + 6L * l).fma(FloatVector.fromArray(F, x, xOff + i + 3 * l), a3);
        }
        for (; i + l <= n; i += l) {
            a0 = load(w, wOff + 2L * i).fma(FloatVector.fromArray(F, x, xOff + i), a0);
        }
        float s = a0.add(a1).add(a2.add(a3)).reduceLanes(VectorOperators.ADD);
        for (; i < n; i++) s += toFloat(w.get(SHORT, wOff + 2L * i)) * x[xOff + i];
        return s;
    }

    @Override
    public void dot4(MemorySegment w, long wOff, float[] x, int x0, int x1, int x2, int x3, int n, float[] out) {
        int l = F.length();
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + l <= n; i += l) {
            FloatVector wv = load(w, wOff + 2L * i);
            a0 = wv.fma(FloatVector.fromArray(F, x, x0 + i), a0);
            a1 = wv.fma(FloatVector.fromArray(F, x, x1 + i), a1);
            a2 = wv.fma(FloatVector.fromArray(F, x, x2 + i), a2);
            a3 = wv.fma(FloatVector.fromArray(F, x, x3 + i), a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; i < n; i++) {
            float wi = toFloat(w.get(SHORT, wOff + 2L * i));
            s0 += wi * x[x0 + i];
            s1 += wi * x[x1 + i];
            s2 += wi * x[x2 + i];
            s3 += wi * x[x3 + i];
        }
        out[0] = s0;
        out[1] = s1;
        out[2] = s2;
        out[3] = s3;
    }

    @Override
    public void toFloats(MemorySegment w, long wOff, float[] dst, int dstOff, int n) {
        int l = F.length();
        int i = 0;
        for (; i + l <= n; i += l) load(w, wOff + 2L * i).intoArray(dst, dstOff + i);
        for (; i < n; i++) dst[dstOff + i] = toFloat(w.get(SHORT, wOff + 2L * i));
    }

    @Override
    public void store(MemorySegment w, long index, float value) {
        w.set(SHORT, 2 * index, fromFloat(value));
    }
}
