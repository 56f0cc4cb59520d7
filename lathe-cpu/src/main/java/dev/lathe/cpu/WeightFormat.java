package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;

import java.lang.foreign.MemorySegment;

/**
 * How one weight storage format is read and written: the inner loops of {@link Linear}, embedding
 * lookups and norm scales. One small final class per format (the Vector API only compiles to
 * straight vector code when the load is inlined, so each class owns its loops); {@link WeightFormats}
 * is the table that picks one by {@link DType}.
 *
 * <p>Offsets are byte offsets into {@code w}; weights are little-endian and need not be aligned.
 * Every sum is accumulated in float32.
 */
interface WeightFormat {
    DType dtype();

    /** {@code sum_i w[i] * x[xOff + i]} over the {@code n} elements starting at byte {@code wOff}. */
    float dot(MemorySegment w, long wOff, float[] x, int xOff, int n);

    /**
     * One weight row against four activation rows starting at {@code x0..x3}, reading the weight once:
     * {@code out[k] = sum_i w[i] * x[xk + i]}.
     */
    void dot4(MemorySegment w, long wOff, float[] x, int x0, int x1, int x2, int x3, int n, float[] out);

    /** Widens {@code n} elements starting at byte {@code wOff} into {@code dst[dstOff..]}. */
    void toFloats(MemorySegment w, long wOff, float[] dst, int dstOff, int n);

    /** Stores {@code value}, rounded to nearest-even in this format, as element {@code index}. */
    void store(MemorySegment w, long index, float value);
}
