package dev.lathe.server;

import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.engine.Engine;
import dev.lathe.core.engine.EngineOverloadedException;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.EngineStats;
import dev.lathe.core.engine.RequestOutput;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.generate.ContextLengthException;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Logprobs;
import dev.lathe.core.sampling.Sampler;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.sampling.StopChecker;
import dev.lathe.core.tokenizer.IncrementalDetokenizer;
import dev.lathe.core.tokenizer.Tokenizer;

import java.util.List;
import java.util.Optional;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An {@link Engine} that runs one request at a time on one thread, sample after sample, with a
 * bounded waiting queue. It has the engine's full request contract (deltas, logprobs, n, stops,
 * abort, overload) without batching; the in-flight batching engine replaces it for throughput.
 */
public final class SerialEngine implements Engine {
    private static final RequestOutput END = new RequestOutput("", 0, new int[0], "", null, null, null, 0, 0, 0);

    private final String name;
    private final ModelConfig config;
    private final ModelRunner runner;
    private final Tokenizer tokenizer;
    private final List<Integer> eosTokenIds;
    private final int numBlocks;
    private final int maxWaiting;
    private final BlockingQueue<Stream> waiting;
    private final Thread worker;
    private final AtomicLong generated = new AtomicLong(), steps = new AtomicLong();
    private volatile Stream current;
    private volatile boolean stopping;
    private long seqIds;

    /**
     * @param runner      the model runner; this engine's thread is its only user from now on
     * @param tokenizer   null for models without one (output text is then the token ids)
     * @param numBlocks   KV blocks of the runner's cache (for stats)
     * @param maxWaiting  requests that may wait; one more gets {@link EngineOverloadedException}
     */
    public SerialEngine(String name, ModelConfig config, ModelRunner runner, Tokenizer tokenizer,
                        List<Integer> eosTokenIds, int numBlocks, int maxWaiting) {
        if (maxWaiting < 0) throw new IllegalArgumentException("maxWaiting must be >= 0, got " + maxWaiting);
        this.name = name;
        this.config = config;
        this.runner = runner;
        this.tokenizer = tokenizer;
        this.eosTokenIds = List.copyOf(eosTokenIds);
        this.numBlocks = numBlocks;
        this.maxWaiting = maxWaiting;
        this.waiting = new ArrayBlockingQueue<>(Math.max(1, maxWaiting));
        this.worker = Thread.ofPlatform().daemon().name("lathe-engine-" + name).start(this::loop);
    }

    @Override public String modelName() { return name; }

    @Override public ModelConfig modelConfig() { return config; }

    @Override public int maxModelLen() { return runner.maxModelLen(); }

    @Override public Optional<Tokenizer> tokenizer() { return Optional.ofNullable(tokenizer); }

    @Override
    public RequestStream submit(EngineRequest request) {
        if (stopping) throw new IllegalStateException("the engine is shutting down");
        int limit = runner.maxModelLen();
        int prompt = request.promptIds().length;
        Integer max = request.params().maxTokens();
        if (prompt >= limit) throw new ContextLengthException(prompt + 1, limit);
        if (max != null && prompt + (long) max > limit) throw new ContextLengthException(prompt + max, limit);
        for (int id : request.promptIds()) {
            if (id < 0 || id >= config.vocabSize()) {
                throw new IllegalArgumentException("request " + request.id() + ": prompt token " + id
                        + " is outside the vocabulary [0, " + config.vocabSize() + ")");
            }
        }
        var s = new Stream(request);
        if (maxWaiting == 0 || !waiting.offer(s)) {
            throw new EngineOverloadedException(waiting.size(), maxWaiting, 1);
        }
        return s;
    }

    @Override
    public EngineStats stats() {
        Stream c = current;
        return new EngineStats(waiting.size(), c == null ? 0 : 1, numBlocks, numBlocks - runner.freeBlocks(), 0, 0, 0,
                generated.get(), steps.get());
    }

    @Override
    public void shutdown(long graceMillis) {
        stopping = true;
        long deadline = System.currentTimeMillis() + graceMillis;
        while ((current != null || !waiting.isEmpty()) && System.currentTimeMillis() < deadline) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        Stream c = current;
        if (c != null) c.abort();
        for (Stream s; (s = waiting.poll()) != null; ) s.finishAborted();
        worker.interrupt();
        try {
            worker.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        runner.close();
    }

    private void loop() {
        while (!stopping || !waiting.isEmpty()) {
            Stream s;
            try {
                s = waiting.poll(100, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                break;
            }
            if (s == null) continue;
            current = s;
            try {
                run(s);
            } catch (RuntimeException e) {
                s.fail(e); // this request alone fails
            } finally {
                current = null;
            }
        }
        for (Stream s; (s = waiting.poll()) != null; ) s.finishAborted();
    }

    private void run(Stream s) {
        EngineRequest r = s.request;
        SamplingParams p = r.params();
        int[] prompt = r.promptIds();
        int maxTokens = p.maxTokens() == null ? runner.maxModelLen() - prompt.length : p.maxTokens();
        for (int i = 0; i < p.n(); i++) {
            SamplingParams sp = p.seed() == null || i == 0 ? p : p.toBuilder().seed(p.seed() + i).build();
            var seq = new Sequence(seqIds++, prompt);
            var sampler = new Sampler(sp, config.vocabSize(), prompt, eosTokenIds);
            var stop = new StopChecker(sp, eosTokenIds);
            var detok = tokenizer == null ? null : new IncrementalDetokenizer(tokenizer, prompt, sp.skipSpecialTokens());
            try {
                int count = prompt.length;
                FinishReason reason = null;
                while (reason == null) {
                    if (s.aborted) {
                        s.emit(new RequestOutput(r.id(), i, new int[0], stop.finish(FinishReason.ABORT).visibleDelta(), null,
                                FinishReason.ABORT, null, prompt.length, seq.numOutputTokens(), 0));
                        break;
                    }
                    float[] logits = runner.step(List.of(seq), new int[]{count}, false).row(0);
                    steps.incrementAndGet();
                    Logprobs.TokenLogprobs lp = null;
                    float[] raw = sp.logprobs() == null ? null : logits.clone();
                    int token = sampler.sampleInPlace(logits);
                    if (raw != null) lp = Logprobs.of(raw, token, sp.logprobs());
                    sampler.accept(token);
                    seq.append(token);
                    generated.incrementAndGet();
                    String delta = detok != null ? detok.add(token) : (seq.numOutputTokens() > 1 ? " " : "") + token;
                    var res = stop.onToken(token, delta, seq.numOutputTokens());
                    String visible = res.visibleDelta();
                    reason = res.finishReason();
                    if (reason == null && seq.numOutputTokens() >= maxTokens) {
                        visible += stop.finish(FinishReason.LENGTH).visibleDelta();
                        reason = FinishReason.LENGTH;
                    }
                    if (reason != null && detok != null && stop.matchedStopString() == null) visible += detok.flush();
                    Object stopReason = stop.matchedStopString() != null ? stop.matchedStopString() : stop.matchedStopTokenId();
                    s.emit(new RequestOutput(r.id(), i, new int[]{token}, visible, lp == null ? null : List.of(lp),
                            reason, stopReason, prompt.length, seq.numOutputTokens(), 0));
                    count = 1;
                }
            } finally {
                runner.free(seq);
            }
        }
        s.end();
    }

    /** One request's deltas, queued by the engine thread, taken by the caller. */
    private static final class Stream implements RequestStream {
        final EngineRequest request;
        final LinkedBlockingQueue<Object> queue = new LinkedBlockingQueue<>();
        volatile boolean aborted;
        private boolean done;

        Stream(EngineRequest request) {
            this.request = request;
        }

        void emit(RequestOutput o) { queue.add(o); }

        void end() { queue.add(END); }

        void fail(RuntimeException e) {
            queue.add(e);
        }

        void finishAborted() {
            for (int i = 0; i < request.params().n(); i++) {
                queue.add(new RequestOutput(request.id(), i, new int[0], "", null, FinishReason.ABORT, null,
                        request.promptIds().length, 0, 0));
            }
            end();
        }

        @Override public String requestId() { return request.id(); }

        @Override
        public RequestOutput next() throws InterruptedException {
            if (done) return null;
            return unwrap(queue.take());
        }

        @Override
        public RequestOutput poll(long timeout, TimeUnit unit) throws InterruptedException {
            if (done) return null;
            Object o = queue.poll(timeout, unit);
            return o == null ? null : unwrap(o);
        }

        private RequestOutput unwrap(Object o) {
            if (o == END) {
                done = true;
                return null;
            }
            if (o instanceof RuntimeException e) {
                done = true;
                throw new IllegalStateException("request " + request.id() + " failed in the engine: " + e.getMessage(), e);
            }
            return (RequestOutput) o;
        }

        @Override public boolean isDone() { return done; }

        @Override public void abort() { aborted = true; }
    }
}
