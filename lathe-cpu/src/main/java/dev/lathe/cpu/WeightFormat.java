package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;

import java.lang.foreign.MemorySegment;

/**
 * How one weight storage format is read and written: the inner loops of {@link Linear}, embedding
 * lookups and norm scales. One small final class per format (the Vector API only compiles to
 * straight vector code when the load is inlined, so each class owns its loops); {@link WeightFormats}
 * is the table that picks one by {@link DType}. Decode reads weights through {@link #dot}; prefill
 * widens tiles with {@link #toFloats} and multiplies float32 (see {@link Linear}).
 *
 * <p>Offsets are byte offsets into {@code w}; weights are little-endian and need not be aligned.
 * Every sum is accumulated in float32.
 */
interface WeightFormat {
    DType dtype();

    /** {@code sum_i w[i] * x[xOff + i]} over the {@code n} elements starting at byte {@code wOff}. */
    float dot(MemorySegment w, long wOff, float[] x, int xOff, int n);

    /** Widens {@code n} elements starting at byte {@code wOff} into {@code dst[dstOff..]}. */
    void toFloats(MemorySegment w, long wOff, float[] dst, int dstOff, int n);

    /** Stores {@code value}, rounded to nearest-even in this format, as element {@code index}. */
    void store(MemorySegment w, long index, float value);
}
