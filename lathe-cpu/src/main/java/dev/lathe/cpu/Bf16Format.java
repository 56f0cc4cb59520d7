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
        float s = VectorMath.sum(a0.add(a1).add(a2.add(a3)));
        for (; i < n; i++) s += toFloat(w.get(SHORT, wOff + 2L * i)) * x[xOff + i];
        return s;
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
