package dev.lathe.cuda;

import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.DeviceBuffer;

/** A weight resident on the GPU in its stored format, row-major {@code [rows, cols]}. */
final class CudaWeight implements Weight {
    private final String name;
    private final DeviceBuffer buffer;
    private final DType dtype;
    private final int rows;
    private final int cols;

    CudaWeight(String name, DeviceBuffer buffer, DType dtype, int rows, int cols) {
        this.name = name;
        this.buffer = buffer;
        this.dtype = dtype;
        this.rows = rows;
        this.cols = cols;
    }

    long address() { return buffer.address(); }

    String shape() { return "[" + rows + ", " + cols + "]"; }

    @Override
    public String name() { return name; }

    @Override
    public DType dtype() { return dtype; }

    @Override
    public int rows() { return rows; }

    @Override
    public int cols() { return cols; }

    @Override
    public void close() { buffer.close(); }

    @Override
    public String toString() { return "CudaWeight(" + name + " " + dtype + " " + shape() + ")"; }
}
