package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Float32 weights, read straight from the segment. */
final class F32Format implements WeightFormat {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    @Override
    public DType dtype() { return DType.F32; }

    private static FloatVector load(MemorySegment w, long off) {
        return FloatVector.fromMemorySegment(F, w, off, LE);
    }

    @Override
    public float dot(MemorySegment w, long wOff, float[] x, int xOff, int n) {
        int l = F.length();
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 4 * l <= n; i += 4 * l) {
            long o = wOff + 4L * i;
            a0 = load(w, o).fma(FloatVector.fromArray(F, x, xOff + i), a0);
            a1 = load(w, o + 4L * l).fma(FloatVector.fromArray(F, x, xOff + i + l), a1);
            a2 = load(w, o + 8L * l).fma(FloatVector.fromArray(F, x, xOff + i + 2 * l), a2);
            a3 = load(w, o + 12L * l).fma(FloatVector.fromArray(F, x, xOff + i + 3 * l), a3);
        }
        for (; i + l <= n; i += l) {
            a0 = load(w, wOff + 4L * i).fma(FloatVector.fromArray(F, x, xOff + i), a0);
        }
        float s = VectorMath.sum(a0.add(a1).add(a2.add(a3)));
        for (; i < n; i++) s += w.get(FLOAT, wOff + 4L * i) * x[xOff + i];
        return s;
    }

    @Override
    public void toFloats(MemorySegment w, long wOff, float[] dst, int dstOff, int n) {
        MemorySegment.copy(w, FLOAT, wOff, dst, dstOff, n);
    }

    @Override
    public void store(MemorySegment w, long index, float value) {
        w.set(FLOAT, 4 * index, value);
    }
}
