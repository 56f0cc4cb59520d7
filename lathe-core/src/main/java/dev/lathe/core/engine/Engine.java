package dev.lathe.core.engine;

import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.tokenizer.Tokenizer;

import java.util.Optional;

/**
 * In-flight batching over a paged KV cache: requests arrive from any thread, one engine thread owns
 * all scheduling state and runs the model step after step, mixing prefill chunks and decodes.
 *
 * <p>{@code submit} validates synchronously (prompt + max tokens within the context, params sane) and
 * throws {@link IllegalArgumentException} with a clear message, or {@link EngineOverloadedException}
 * when the waiting queue is full; nothing is queued in either case. A request that fails inside the
 * engine ends its own stream with an error and never disturbs the others.
 */
public interface Engine extends AutoCloseable {
    /** The served model's name (as clients address it). */
    String modelName();

    ModelConfig modelConfig();

    /** Longest prompt + output, in tokens. */
    int maxModelLen();

    /** The tokenizer, when the model has one (synthetic models do not). */
    Optional<Tokenizer> tokenizer();

    RequestStream submit(EngineRequest request);

    EngineStats stats();

    /** Stops taking requests, aborts what is in flight after {@code graceMillis}, stops the engine thread. */
    void shutdown(long graceMillis);

    @Override
    default void close() { shutdown(0); }
}
