package dev.lathe.cpu;

import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;

/** A row-major {@code [rows, cols]} buffer on the Java heap: {@code float[]} for F32, {@code int[]} for I32. */
final class CpuTensor implements Tensor {
    private final DType dtype;
    private final int rows;
    private final int cols;
    private float[] floats;
    private int[] ints;

    private CpuTensor(DType dtype, int rows, int cols, float[] floats, int[] ints) {
        this.dtype = dtype;
        this.rows = rows;
        this.cols = cols;
        this.floats = floats;
        this.ints = ints;
    }

    static CpuTensor allocate(DType dtype, int rows, int cols) {
        long size = checkedSize(rows, cols);
        return switch (dtype) {
            case F32 -> new CpuTensor(dtype, rows, cols, new float[(int) size], null);
            case I32 -> new CpuTensor(dtype, rows, cols, null, new int[(int) size]);
            default -> throw new IllegalArgumentException("cpu backend: tensors are F32 or I32, not " + dtype
                    + " (asked for [" + rows + ", " + cols + "])");
        };
    }

    static CpuTensor of(float[] data, int rows, int cols) {
        checkLength(data.length, rows, cols);
        return new CpuTensor(DType.F32, rows, cols, data.clone(), null);
    }

    static CpuTensor of(int[] data, int rows, int cols) {
        checkLength(data.length, rows, cols);
        return new CpuTensor(DType.I32, rows, cols, null, data.clone());
    }

    private static void checkLength(int length, int rows, int cols) {
        long size = checkedSize(rows, cols);
        if (length != size) {
            throw new IllegalArgumentException("upload: " + length + " values do not fill a [" + rows + ", "
                    + cols + "] tensor (" + size + " needed)");
        }
    }

    private static long checkedSize(int rows, int cols) {
        long size = (long) rows * cols;
        if (rows < 0 || cols < 0 || size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("cpu backend: cannot hold a [" + rows + ", " + cols
                    + "] tensor (negative, or over 2^31 elements)");
        }
        return size;
    }

    /** The F32 storage, or an error naming the op and the role when this is not a live F32 tensor. */
    float[] floats(String op, String role) {
        check(op, role, DType.F32);
        return floats;
    }

    int[] ints(String op, String role) {
        check(op, role, DType.I32);
        return ints;
    }

    private void check(String op, String role, DType expected) {
        if (floats == null && ints == null) {
            throw new IllegalStateException(op + ": " + role + " " + shape() + " was already closed");
        }
        if (dtype != expected) {
            throw new IllegalArgumentException(op + ": " + role + " " + shape() + " is " + dtype + ", expected " + expected);
        }
    }

    String shape() { return "[" + rows + ", " + cols + "]"; }

    @Override
    public DType dtype() { return dtype; }

    @Override
    public int rows() { return rows; }

    @Override
    public int cols() { return cols; }

    @Override
    public void close() {
        floats = null;
        ints = null;
    }

    @Override
    public String toString() { return "CpuTensor" + shape() + " " + dtype; }
}
