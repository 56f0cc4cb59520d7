package dev.lathe.cuda;

import dev.lathe.core.backend.KvCache;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.cuda.driver.DeviceBuffer;

/**
 * The paged KV cache in one device allocation: {@code [numLayers][K, V][numBlocks, blockSize, numKvHeads,
 * headDim]} in F32, F16 or BF16.
 */
final class CudaKvCache implements KvCache {
    private final DeviceBuffer buffer;
    private final int numLayers, numBlocks, blockSize, numKvHeads, headDim;
    private final DType dtype;

    CudaKvCache(DeviceBuffer buffer, int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        this.buffer = buffer;
        this.numLayers = numLayers;
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        this.numKvHeads = numKvHeads;
        this.headDim = headDim;
        this.dtype = dtype;
    }

    static long bytesPerLayerTensor(int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        return (long) numBlocks * blockSize * numKvHeads * headDim * dtype.byteSize();
    }

    DeviceBuffer buffer() { return buffer; }

    long slots() { return (long) numBlocks * blockSize; }

    long keys(int layer) { return buffer.address() + (2L * checkLayer(layer)) * layerBytes(); }

    long values(int layer) { return buffer.address() + (2L * checkLayer(layer) + 1) * layerBytes(); }

    private long layerBytes() { return bytesPerLayerTensor(numBlocks, blockSize, numKvHeads, headDim, dtype); }

    private int checkLayer(int layer) {
        if (layer < 0 || layer >= numLayers) {
            throw new IllegalArgumentException("KV cache has " + numLayers + " layers, asked for layer " + layer);
        }
        return layer;
    }

    @Override
    public int numLayers() { return numLayers; }

    @Override
    public int numBlocks() { return numBlocks; }

    @Override
    public int blockSize() { return blockSize; }

    @Override
    public int numKvHeads() { return numKvHeads; }

    @Override
    public int headDim() { return headDim; }

    @Override
    public DType dtype() { return dtype; }

    @Override
    public void close() { buffer.close(); }
}
