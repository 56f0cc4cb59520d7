package dev.lathe.core.backend;

import dev.lathe.core.checkpoint.DType;

/**
 * The paged KV cache of all layers. Per layer and for K and V alike the layout is
 * {@code [numBlocks, blockSize, numKvHeads, headDim]}; token {@code t} of a sequence lives in block
 * {@code blockTable[t / blockSize]} at offset {@code t % blockSize}, its "slot" is
 * {@code block * blockSize + offset}.
 */
public interface KvCache extends AutoCloseable {
    int numLayers();

    int numBlocks();

    int blockSize();

    int numKvHeads();

    int headDim();

    DType dtype();

    @Override
    void close();
}
