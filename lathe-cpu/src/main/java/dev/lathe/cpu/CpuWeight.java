package dev.lathe.cpu;

import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A weight read in place from one or more memory segments in its stored format. A fused weight is
 * its parts stacked along rows: part {@code p} holds rows {@code [parts[p].firstRow, +rows)}, each a
 * contiguous row-major {@code [rows, cols]} block of its own segment. Nothing is copied, except that
 * a one-row weight (norm scale, bias) is widened to a float[] once, on first use.
 */
final class CpuWeight implements Weight {
    /** Rows {@code [firstRow, firstRow + rows)} of the weight, row-major in {@code data} from byte 0. */
    record Part(MemorySegment data, int firstRow, int rows) {}

    private final String name;
    private final WeightFormat format;
    private final int rows;
    private final int cols;
    private final Part[] parts;
    private final Arena arena; // owns the memory of generated weights; null for mapped ones
    private volatile float[] widened;
    private volatile boolean closed;

    CpuWeight(String name, WeightFormat format, int rows, int cols, List<Part> parts, Arena arena) {
        this.name = name;
        this.format = format;
        this.rows = rows;
        this.cols = cols;
        this.parts = parts.toArray(Part[]::new);
        this.arena = arena;
    }

    WeightFormat format() {
        if (closed) throw new IllegalStateException("weight '" + name + "' was already closed");
        return format;
    }

    Part[] parts() { return parts; }

    long rowBytes() { return (long) cols * format.dtype().byteSize(); }

    /** The part that holds row {@code r}. */
    Part partOf(int r) {
        for (Part p : parts) {
            if (r < p.firstRow + p.rows) return p;
        }
        throw new IndexOutOfBoundsException("weight '" + name + "' has " + rows + " rows, asked for row " + r);
    }

    /** Widens row {@code r} into {@code dst[off..off + cols)}. */
    void row(int r, float[] dst, int off) {
        Part p = partOf(r);
        format().toFloats(p.data, (r - p.firstRow) * rowBytes(), dst, off, cols);
    }

    /** A one-row weight as floats (cached; callers must not modify it). */
    float[] vector(String op) {
        if (rows != 1) {
            throw new IllegalArgumentException(op + ": weight '" + name + "' " + shape() + " must have one row");
        }
        float[] v = widened;
        if (v == null) {
            v = new float[cols];
            row(0, v, 0);
            widened = v;
        }
        return v;
    }

    String shape() { return "[" + rows + ", " + cols + "]"; }

    @Override
    public String name() { return name; }

    @Override
    public DType dtype() { return format.dtype(); }

    @Override
    public int rows() { return rows; }

    @Override
    public int cols() { return cols; }

    /** Frees generated memory; mapped checkpoint bytes belong to their source. Closing twice is harmless. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        if (arena != null) arena.close();
    }

    @Override
    public String toString() { return "CpuWeight '" + name + "' " + shape() + " " + dtype(); }
}
