package dev.lathe.core.engine;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;

import java.util.Locale;

/**
 * How many KV blocks fit on a device once the weights are loaded: of the device's memory, the share
 * {@code utilization} may be used by this process; what the weights and everything else already took is
 * gone from the free bytes; the activations of the largest step are set aside; the rest holds blocks.
 *
 * <p>The activation reserve is an estimate from the shapes, not a measurement: every float32 tensor one
 * layer keeps for {@code maxNumBatchedTokens} tokens, doubled (buffers are pooled by rounded size, and
 * 16-bit GEMMs of up to 64 rows hold a split copy of their input and a 2n-row output), the logits of
 * {@code maxNumSeqs} rows four times (the step's, the rows copied out, and the decode graphs', whose batch
 * sizes 1, 2, 4, ... add up to less than twice the largest), and {@link #FIXED_RESERVE} for the GEMM
 * workspace, staging buffers and the graphs' own input tensors.
 */
public final class KvCacheSizing {
    /** The default share of the device's memory this process may use (weights, activations and KV). */
    public static final double DEFAULT_UTILIZATION = 0.9;
    static final long FIXED_RESERVE = 512L << 20;

    private KvCacheSizing() {}

    /** Bytes of one block: keys and values of {@code blockSize} tokens in every layer. */
    public static long bytesPerBlock(ModelConfig c, int blockSize, DType dtype) {
        return 2L * c.numLayers() * blockSize * c.numKvHeads() * c.headDim() * dtype.byteSize();
    }

    /** The activation reserve described on the class. */
    public static long activationBytes(ModelConfig c, int maxNumBatchedTokens, int maxNumSeqs) {
        long perToken = 3L * c.hiddenSize() + 2L * c.qkvSize() + c.qSize() + 3L * c.intermediateSize();
        long layer = 2L * 4 * perToken * maxNumBatchedTokens;
        long logits = 4L * 4 * maxNumSeqs * c.vocabSize();
        return layer + logits + FIXED_RESERVE;
    }

    /**
     * Blocks that fit in {@code memory} (read after the weights were loaded).
     *
     * @throws IllegalArgumentException when fewer than {@code minBlocks} fit, saying what would help
     */
    public static int blocksThatFit(ModelConfig c, Backend.Memory memory, double utilization, int blockSize,
                                    DType dtype, int maxNumBatchedTokens, int maxNumSeqs, int minBlocks) {
        return blocksThatFit(c, memory, utilization, 1.0, blockSize, dtype, maxNumBatchedTokens, maxNumSeqs, minBlocks);
    }

    /**
     * As above, for one of several caches on the device: this one takes {@code share} of what is left for KV
     * now. Caches made one after another, the i-th of n taking {@code 1 / (n - i)}, split it evenly.
     */
    public static int blocksThatFit(ModelConfig c, Backend.Memory memory, double utilization, double share,
                                    int blockSize, DType dtype, int maxNumBatchedTokens, int maxNumSeqs, int minBlocks) {
        if (!(utilization > 0 && utilization <= 1)) {
            throw new IllegalArgumentException("GPU memory utilization must be in (0, 1], got " + utilization);
        }
        if (!(share > 0 && share <= 1)) throw new IllegalArgumentException("KV share must be in (0, 1], got " + share);
        long reserved = (long) ((1 - utilization) * memory.totalBytes());
        long activations = activationBytes(c, maxNumBatchedTokens, maxNumSeqs);
        long forKv = (long) ((memory.freeBytes() - reserved - activations) * share);
        long perBlock = bytesPerBlock(c, blockSize, dtype);
        long blocks = Math.max(0, forKv / perBlock);
        if (blocks < minBlocks) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "the KV cache needs at least %d blocks (%.2f GiB) for one sequence, but after the weights %.2f GiB of"
                            + " %.2f GiB are free, %.2f GiB stay unused (utilization %.2f) and %.2f GiB are set aside for"
                            + " activations; lower --max-model-len or --max-num-batched-tokens, or raise"
                            + " --gpu-memory-utilization",
                    minBlocks, gib(minBlocks * perBlock), gib(memory.freeBytes()), gib(memory.totalBytes()), gib(reserved),
                    utilization, gib(activations)));
        }
        return (int) Math.min(Integer.MAX_VALUE, blocks);
    }

    private static double gib(long bytes) { return bytes / (double) (1L << 30); }
}
