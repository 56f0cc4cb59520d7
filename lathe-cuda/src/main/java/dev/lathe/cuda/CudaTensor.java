package dev.lathe.cuda;

import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.DeviceBuffer;

import java.util.function.Consumer;

/**
 * A row-major {@code [rows, cols]} tensor in device memory, from byte {@code offset} of its buffer (0 unless several
 * tensors share one buffer); closing it hands the memory to its owner.
 */
final class CudaTensor implements Tensor {
    private final DeviceBuffer buffer;
    private final long offset;
    private final DType dtype;
    private final int rows;
    private final int cols;
    private final Consumer<DeviceBuffer> onClose;
    private boolean closed;

    CudaTensor(DeviceBuffer buffer, DType dtype, int rows, int cols) {
        this(buffer, dtype, rows, cols, DeviceBuffer::close);
    }

    CudaTensor(DeviceBuffer buffer, DType dtype, int rows, int cols, Consumer<DeviceBuffer> onClose) {
        this(buffer, 0, dtype, rows, cols, onClose);
    }

    CudaTensor(DeviceBuffer buffer, long offset, DType dtype, int rows, int cols, Consumer<DeviceBuffer> onClose) {
        this.buffer = buffer;
        this.offset = offset;
        this.dtype = dtype;
        this.rows = rows;
        this.cols = cols;
        this.onClose = onClose;
    }

    long address() {
        if (closed) throw new IllegalStateException("tensor " + this + " was closed");
        return buffer.address() + offset;
    }

    DeviceBuffer buffer() { return buffer; }

    /** The tensor's first byte within {@link #buffer}. */
    long offset() { return offset; }

    long bytes() { return size() * dtype.byteSize(); }

    String shape() { return "[" + rows + ", " + cols + "]"; }

    @Override
    public DType dtype() { return dtype; }

    @Override
    public int rows() { return rows; }

    @Override
    public int cols() { return cols; }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        onClose.accept(buffer);
    }

    @Override
    public String toString() { return "CudaTensor(" + dtype + " " + shape() + ")"; }
}
