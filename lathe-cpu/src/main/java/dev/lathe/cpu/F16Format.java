package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * IEEE binary16 weights. The vector widening moves exponent and mantissa into float position
 * ({@code << 13}) and rescales by 2^112 (the difference of the exponent biases, 127 - 15), which is
 * exact for normal and subnormal halves alike; infinities and NaNs get the all-ones exponent instead.
 */
final class F16Format implements WeightFormat {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> I = F.withLanes(int.class);
    private static final VectorSpecies<Short> S =
            VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);

    @Override
    public DType dtype() { return DType.F16; }

    static FloatVector load(MemorySegment w, long off) {
        IntVector h = (IntVector) ShortVector.fromMemorySegment(S, w, off, LE).convertShape(VectorOperators.S2I, I, 0);
        IntVector abs = h.and(0x7FFF);
        IntVector shifted = abs.lanewise(VectorOperators.LSHL, 13);
        IntVector magnitude = shifted.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
        VectorMask<Integer> infOrNan = abs.compare(VectorOperators.GE, 0x7C00);
        IntVector bits = magnitude.blend(shifted.or(0x7F800000), infOrNan);
        return bits.or(h.and(0x8000).lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats();
    }

    @Override
    public float dot(MemorySegment w, long wOff, float[] x, int xOff, int n) {
        int l = F.length();
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        int i = 0;
        for (; i + 2 * l <= n; i += 2 * l) {
            long o = wOff + 2L * i;
            a0 = load(w, o).fma(FloatVector.fromArray(F, x, xOff + i), a0);
            a1 = load(w, o + 2L * l).fma(FloatVector.fromArray(F, x, xOff + i + l), a1);
        }
        for (; i + l <= n; i += l) {
            a0 = load(w, wOff + 2L * i).fma(FloatVector.fromArray(F, x, xOff + i), a0);
        }
        float s = VectorMath.sum(a0.add(a1));
        for (; i < n; i++) s += Float.float16ToFloat(w.get(SHORT, wOff + 2L * i)) * x[xOff + i];
        return s;
    }

    @Override
    public void toFloats(MemorySegment w, long wOff, float[] dst, int dstOff, int n) {
        int l = F.length();
        int i = 0;
        for (; i + l <= n; i += l) load(w, wOff + 2L * i).intoArray(dst, dstOff + i);
        for (; i < n; i++) dst[dstOff + i] = Float.float16ToFloat(w.get(SHORT, wOff + 2L * i));
    }

    @Override
    public void store(MemorySegment w, long index, float value) {
        w.set(SHORT, 2 * index, Float.floatToFloat16(value));
    }
}
