package dev.lathe.core.checkpoint;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One named tensor of a checkpoint: its dtype, its shape (row-major, outermost first) and its bytes,
 * usually a slice of a memory-mapped safetensors file (never copied onto the Java heap).
 */
public record WeightTensor(String name, DType dtype, long[] shape, MemorySegment data) {

    public long numElements() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    public String shapeString() { return Arrays.toString(shape); }

    /** Throws a clear error when the shape differs from the one the config implies. */
    public WeightTensor expectShape(long... expected) {
        if (!Arrays.equals(shape, expected)) {
            throw new IllegalArgumentException("tensor '" + name + "' has shape " + Arrays.toString(shape)
                    + ", config expects " + Arrays.toString(expected));
        }
        return this;
    }

    /**
     * This tensor as a {@code {rows, cols}} matrix (a 1-D tensor is one row) after checking that its bytes
     * hold exactly that many elements of its dtype; an error names the tensor otherwise.
     */
    public int[] matrixShape() {
        long rows, cols;
        if (shape.length == 1) {
            rows = 1;
            cols = shape[0];
        } else if (shape.length == 2) {
            rows = shape[0];
            cols = shape[1];
        } else {
            throw new IllegalArgumentException("tensor '" + name + "' has shape " + shapeString() + "; weights must be 1-D or 2-D");
        }
        if (rows <= 0 || cols <= 0 || rows > Integer.MAX_VALUE || cols > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("tensor '" + name + "' has unusable shape " + shapeString());
        }
        long expected = rows * cols * dtype.byteSize();
        if (data.byteSize() != expected) {
            throw new IllegalArgumentException("tensor '" + name + "' " + dtype + " " + shapeString() + " needs "
                    + expected + " bytes but holds " + data.byteSize());
        }
        return new int[]{(int) rows, (int) cols};
    }
}
