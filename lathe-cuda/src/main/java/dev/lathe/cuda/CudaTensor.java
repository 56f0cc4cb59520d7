package dev.lathe.cuda;

import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.DeviceBuffer;

/** A row-major {@code [rows, cols]} tensor in device memory. */
final class CudaTensor implements Tensor {
    private final DeviceBuffer buffer;
    private final DType dtype;
    private final int rows;
    private final int cols;

    CudaTensor(DeviceBuffer buffer, DType dtype, int rows, int cols) {
        this.buffer = buffer;
        this.dtype = dtype;
        this.rows = rows;
        this.cols = cols;
    }

    long address() { return buffer.address(); }

    DeviceBuffer buffer() { return buffer; }

    long bytes() { return size() * dtype.byteSize(); }

    String shape() { return "[" + rows + ", " + cols + "]"; }

    @Override
    public DType dtype() { return dtype; }

    @Override
    public int rows() { return rows; }

    @Override
    public int cols() { return cols; }

    @Override
    public void close() { buffer.close(); }

    @Override
    public String toString() { return "CudaTensor(" + dtype + " " + shape() + ")"; }
}
