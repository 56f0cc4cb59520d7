package dev.lathe.server;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.Engine;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.KvCacheSizing;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.generate.LoadedModel;

/**
 * Builds the engine that serves one loaded model. {@link #DEFAULT} is what {@code lathe serve} uses.
 */
@FunctionalInterface
public interface EngineFactory {
    /**
     * How to size an engine.
     *
     * @param maxModelLen longest prompt + output, in tokens
     * @param blockSize   KV-cache block size in tokens
     * @param maxWaiting  requests that may wait before the engine answers 429
     * @param kvCacheDtype element type of the KV cache
     * @param gpuMemoryUtilization share of a GPU's memory for weights, activations and KV cache
     * @param kvShare      share of what is left for KV that this engine takes (several models on one GPU)
     */
    record Settings(int maxModelLen, int blockSize, int maxWaiting, DType kvCacheDtype, double gpuMemoryUtilization,
                    double kvShare, int maxNumSeqs, int maxNumBatchedTokens, boolean guaranteeNoEvict,
                    double admissionWatermark) {
        /** maxNumSeqs or maxNumBatchedTokens 0: {@link EngineConfig#defaults}'s. */
        public Settings {
            if (maxModelLen < 2 || blockSize < 1 || maxWaiting < 0 || kvCacheDtype == null
                    || !(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1) || !(kvShare > 0 && kvShare <= 1)
                    || maxNumSeqs < 0 || maxNumBatchedTokens < 0 || !(admissionWatermark >= 0 && admissionWatermark < 1)) {
                throw new IllegalArgumentException("engine settings out of range: maxModelLen=" + maxModelLen
                        + " blockSize=" + blockSize + " maxWaiting=" + maxWaiting + " kvCacheDtype=" + kvCacheDtype
                        + " gpuMemoryUtilization=" + gpuMemoryUtilization + " kvShare=" + kvShare + " (shares in (0, 1])"
                        + " maxNumSeqs=" + maxNumSeqs + " maxNumBatchedTokens=" + maxNumBatchedTokens + " (0 = default)"
                        + " admissionWatermark=" + admissionWatermark + " (in [0, 1))");
            }
        }

        /** With the default admission watermark ({@link EngineConfig#DEFAULT_ADMISSION_WATERMARK}). */
        public Settings(int maxModelLen, int blockSize, int maxWaiting, DType kvCacheDtype, double gpuMemoryUtilization,
                        double kvShare, int maxNumSeqs, int maxNumBatchedTokens, boolean guaranteeNoEvict) {
            this(maxModelLen, blockSize, maxWaiting, kvCacheDtype, gpuMemoryUtilization, kvShare, maxNumSeqs,
                    maxNumBatchedTokens, guaranteeNoEvict, EngineConfig.DEFAULT_ADMISSION_WATERMARK);
        }

        public Settings(int maxModelLen, int blockSize, int maxWaiting, DType kvCacheDtype, double gpuMemoryUtilization,
                        double kvShare) {
            this(maxModelLen, blockSize, maxWaiting, kvCacheDtype, gpuMemoryUtilization, kvShare, 0, 0, false);
        }

        public Settings(int maxModelLen, int blockSize, int maxWaiting, DType kvCacheDtype) {
            this(maxModelLen, blockSize, maxWaiting, kvCacheDtype, KvCacheSizing.DEFAULT_UTILIZATION, 1.0);
        }
    }

    Engine create(String name, LoadedModel model, Settings settings);

    /**
     * The in-flight batching engine ({@link LlmEngine}): the default sequence and token budgets, prefix
     * caching on. On a GPU the KV cache takes what the weights and the activation reserve leave of
     * {@code gpuMemoryUtilization} of its memory ({@link KvCacheSizing}); on the CPU, the default pool scaled
     * to the block size (at least one full-length sequence).
     */
    EngineFactory DEFAULT = (name, model, s) -> {
        var defaults = EngineConfig.defaults(s.maxModelLen());
        var d = defaults.withMaxNumSeqs(s.maxNumSeqs() > 0 ? s.maxNumSeqs() : defaults.maxNumSeqs())
                .withMaxNumBatchedTokens(s.maxNumBatchedTokens() > 0 ? s.maxNumBatchedTokens() : defaults.maxNumBatchedTokens());
        int blocksPerSeq = (s.maxModelLen() + s.blockSize() - 1) / s.blockSize();
        var memory = model.model().backend().memory();
        int numBlocks = memory.isPresent()
                ? KvCacheSizing.blocksThatFit(model.config(), memory.get(), s.gpuMemoryUtilization(), s.kvShare(),
                        s.blockSize(), s.kvCacheDtype(), d.maxNumBatchedTokens(), d.maxNumSeqs(), blocksPerSeq)
                : Math.max(blocksPerSeq, (int) ((long) d.numBlocks() * d.blockSize() / s.blockSize()));
        var config = new EngineConfig(d.maxNumSeqs(), d.maxNumBatchedTokens(), s.blockSize(), numBlocks,
                s.maxModelLen(), Math.max(1, s.maxWaiting()), true, s.kvCacheDtype(), s.guaranteeNoEvict(),
                s.admissionWatermark());
        return new LlmEngine(name, model.model(), model.tokenizer().orElse(null), model.eosTokenIds(), config);
    };
}
