package dev.lathe.cpu;

import dev.lathe.core.backend.KvCache;
import dev.lathe.core.checkpoint.DType;

/**
 * The paged KV cache on the heap: one float[] for K and one for V per layer, each laid out
 * {@code [numBlocks, blockSize, numKvHeads, headDim]}, so slot {@code s}, head {@code h} starts at
 * {@code (s * numKvHeads + h) * headDim}. With dtype BF16 the values are rounded to bfloat16 when
 * written (the numbers a BF16 cache holds) but kept in float32 storage.
 */
final class CpuKvCache implements KvCache {
    private final int numLayers;
    private final int numBlocks;
    private final int blockSize;
    private final int numKvHeads;
    private final int headDim;
    private final DType dtype;
    private float[][] k;
    private float[][] v;

    CpuKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim, DType dtype) {
        if (dtype != DType.F32 && dtype != DType.BF16) {
            throw new IllegalArgumentException("cpu backend: KV cache dtype " + dtype
                    + " is not supported (use F32 or BF16)");
        }
        if (numLayers <= 0 || numBlocks <= 0 || blockSize <= 0 || numKvHeads <= 0 || headDim <= 0) {
            throw new IllegalArgumentException("cpu backend: KV cache sizes must be positive: layers=" + numLayers
                    + " blocks=" + numBlocks + " blockSize=" + blockSize + " kvHeads=" + numKvHeads + " headDim=" + headDim);
        }
        long perLayer = (long) numBlocks * blockSize * numKvHeads * headDim;
        if (perLayer > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("cpu backend: a KV cache layer of " + numBlocks + " blocks x "
                    + blockSize + " tokens x " + numKvHeads + " heads x " + headDim + " exceeds 2^31 floats; use fewer blocks");
        }
        this.numLayers = numLayers;
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        this.numKvHeads = numKvHeads;
        this.headDim = headDim;
        this.dtype = dtype;
        this.k = new float[numLayers][(int) perLayer];
        this.v = new float[numLayers][(int) perLayer];
    }

    float[] keys(int layer) { return layerOf(k, layer); }

    float[] values(int layer) { return layerOf(v, layer); }

    private float[] layerOf(float[][] store, int layer) {
        if (store == null) throw new IllegalStateException("KV cache was already closed");
        if (layer < 0 || layer >= numLayers) {
            throw new IllegalArgumentException("KV cache has " + numLayers + " layers, asked for layer " + layer);
        }
        return store[layer];
    }

    /** The value the cache holds for {@code x}: itself, or rounded to bfloat16. */
    float quantize(float x) {
        return dtype == DType.BF16 ? Bf16Format.toFloat(Bf16Format.fromFloat(x)) : x;
    }

    long slots() { return (long) numBlocks * blockSize; }

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
    public void close() {
        k = null;
        v = null;
    }
}
