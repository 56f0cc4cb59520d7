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
}
