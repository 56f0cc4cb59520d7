package dev.lathe.core.backend;

import dev.lathe.core.checkpoint.DType;

/**
 * A model weight resident in a backend, held in a storage format (BF16, F16 or F32 today; FP8,
 * INT8 and INT4-AWQ later). A 2-D weight is {@code [outFeatures, inFeatures]} as in HF; a 1-D
 * weight (norm scale, bias) is {@code [1, n]}.
 */
public interface Weight extends AutoCloseable {
    String name();

    DType dtype();

    int rows();

    int cols();

    @Override
    void close();
}
