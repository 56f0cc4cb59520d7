package dev.lathe.server;

import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.engine.Engine;
import dev.lathe.core.engine.EngineOverloadedException;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.EngineStats;
import dev.lathe.core.engine.RequestOutput;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.tokenizer.Tokenizer;

import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An engine for fault tests: either always overloaded, or producing the token "x" every
 * {@code tokenMillis} until aborted (a stream that never ends on its own).
 */
final class StubEngine implements Engine {
    final CountDownLatch aborted = new CountDownLatch(1);
    final AtomicInteger submitted = new AtomicInteger();
    private final boolean overloaded;
    /** When set, the stream of a request whose prompt starts with this token fails inside the engine. */
    volatile Integer failOnFirstToken;
    private final long tokenMillis;

    StubEngine(boolean overloaded, long tokenMillis) {
        this.overloaded = overloaded;
        this.tokenMillis = tokenMillis;
    }

    @Override public String modelName() { return "stub"; }

    @Override public ModelConfig modelConfig() { return TestModels.model().config(); }

    @Override public int maxModelLen() { return TestModels.MAX_MODEL_LEN; }

    @Override public Optional<Tokenizer> tokenizer() { return TestModels.model().tokenizer(); }

    @Override
    public RequestStream submit(EngineRequest request) {
        if (overloaded) throw new EngineOverloadedException(8, 8, 3);
        submitted.incrementAndGet();
        return new RequestStream() {
            private volatile boolean abort;
            private boolean done;
            private int n;

            @Override public String requestId() { return request.id(); }

            @Override
            public RequestOutput next() throws InterruptedException {
                if (done) return null;
                if (abort) {
                    done = true;
                    return new RequestOutput(request.id(), 0, new int[0], "", null, FinishReason.ABORT, null,
                            request.promptIds().length, n, 0);
                }
                Thread.sleep(tokenMillis);
                if (failOnFirstToken != null && request.promptIds()[0] == failOnFirstToken) {
                    done = true;
                    throw new IllegalStateException("request " + request.id() + " failed in the engine: NaN logits");
                }
                n++;
                if (request.params().maxTokens() != null && n >= request.params().maxTokens()) {
                    done = true;
                    return new RequestOutput(request.id(), 0, new int[]{5}, "x", null, FinishReason.LENGTH, null,
                            request.promptIds().length, n, 0);
                }
                return new RequestOutput(request.id(), 0, new int[]{5}, "x", null, null, null, request.promptIds().length, n, 0);
            }

            @Override
            public RequestOutput poll(long timeout, TimeUnit unit) throws InterruptedException { return next(); }

            @Override public boolean isDone() { return done; }

            @Override
            public void abort() {
                abort = true;
                aborted.countDown();
            }
        };
    }

    @Override public EngineStats stats() { return new EngineStats(0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0); }

    @Override public void shutdown(long graceMillis) { }
}
