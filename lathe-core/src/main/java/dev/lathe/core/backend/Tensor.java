package dev.lathe.core.backend;

import dev.lathe.core.checkpoint.DType;

/**
 * An activation or metadata buffer owned by a backend. Row-major, shape {@code [rows, cols]}
 * (a vector is {@code [1, n]} or {@code [n, 1]} as the op documents). Activations are packed
 * token-major: {@code [numTokens, width]}, no padding, no batch dimension.
 */
public interface Tensor extends AutoCloseable {
    DType dtype();

    int rows();

    int cols();

    default long size() { return (long) rows() * cols(); }

    /** Frees the buffer now; using it afterwards is an error. */
    @Override
    void close();
}
