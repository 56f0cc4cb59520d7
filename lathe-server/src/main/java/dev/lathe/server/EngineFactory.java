package dev.lathe.server;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.Engine;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;

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
     */
    record Settings(int maxModelLen, int blockSize, int maxWaiting, DType kvCacheDtype) {
        public Settings {
            if (maxModelLen < 2 || blockSize < 1 || maxWaiting < 0 || kvCacheDtype == null) {
                throw new IllegalArgumentException("engine settings out of range: maxModelLen=" + maxModelLen
                        + " blockSize=" + blockSize + " maxWaiting=" + maxWaiting + " kvCacheDtype=" + kvCacheDtype);
            }
        }
    }

    Engine create(String name, LoadedModel model, Settings settings);

    /*
     * THE place where the serving engine is chosen. Until the in-flight batching engine lands this is
     * the one-request-at-a-time SerialEngine; replace the body with the batching engine's factory
     * (e.g. Engines.create(model, config)) and nothing else in the server changes.
     */
    EngineFactory DEFAULT = (name, model, s) -> {
        var cache = ModelRunner.CacheConfig.forSequences(s.maxModelLen(), 1, s.blockSize(), s.kvCacheDtype());
        return new SerialEngine(name, model.config(), new ModelRunner(model.model(), cache),
                model.tokenizer().orElse(null), model.eosTokenIds(), cache.numBlocks(), s.maxWaiting());
    };
}
