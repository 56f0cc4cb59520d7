package dev.lathe.core.engine;

import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.engine.RequestState.SampleState;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Logprobs;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.Tokenizer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The engine: one thread owns the {@link Scheduler}, the {@link ModelRunner} and every request's
 * samplers; other threads talk to it through a queue of messages (add, abort).
 *
 * <p>A step: take messages; {@link Scheduler#schedule}; apply the output to the runner's persistent
 * batch (sequences keyed by id: new ones in full, running ones by their new blocks); run the model;
 * {@link Scheduler#update}; then {@link #processOutputs}: sample each sequence whose tokens are all
 * computed, check stops, detokenise and push one delta per sample into its request's stream.
 */
public final class LlmEngine implements Engine {
    /**
     * System property, read when an engine is built: {@code true} lets a backend that {@link
     * dev.lathe.core.backend.Backend#supportsSampling samples rows itself} draw the tokens of sampled requests
     * (temperature, top-k, top-p, min-p, seed) where the logits are, so that those rows do not come back whole.
     * On by default; {@code false} draws every token on the host.
     */
    public static final String DEVICE_SAMPLING_PROPERTY = "lathe.sampling.device";

    /**
     * System property, read when an engine is built: {@code true} lets the engine launch a step before it has
     * processed the previous step's tokens, where the backend {@link
     * dev.lathe.core.backend.Backend#supportsAsyncSteps keeps greedy picks on the device}. Then the host's work
     * on step N (outputs, stops, the next schedule) runs while the device computes step N + 1. Only steps whose
     * every row is a plain greedy pick run ahead; any other step waits as before. On by default; {@code false}
     * turns it off.
     */
    public static final String OVERLAP_PROPERTY = "lathe.engine.overlap";

    /** The token a sequence holds for a pick still on its way from the device (see {@link #OVERLAP_PROPERTY}). */
    private static final int PLACEHOLDER = 0;

    /** Whether {@link #DEVICE_SAMPLING_PROPERTY} asks for device draws (default true). */
    public static boolean deviceSamplingRequested() {
        return Boolean.parseBoolean(System.getProperty(DEVICE_SAMPLING_PROPERTY, "true"));
    }

    private sealed interface Message permits Add, Abort {}

    private record Add(RequestState request) implements Message {}

    private record Abort(String requestId) implements Message {}

    private final String modelName;
    private final ModelConfig modelConfig;
    private final Tokenizer tokenizer;
    private final List<Integer> eosTokenIds;
    private final EngineConfig config;
    private final ModelRunner runner;
    private final boolean deviceSampling;
    private final boolean overlap;
    /**
     * The model's backend. A backend is driven by one thread at a time (the CUDA backend's stream, staging
     * buffers and graph recording are not shared safely), and engines of several models may share one: each
     * step, and the release of the KV cache, holds this lock.
     */
    private final Object backendLock;
    private final Scheduler scheduler;
    private final KvCacheManager kv;
    private final LinkedBlockingQueue<Message> inbox = new LinkedBlockingQueue<>();
    private final Map<String, RequestState> active = new ConcurrentHashMap<>();
    private final AtomicInteger queued = new AtomicInteger(); // accepted, not yet running
    private final AtomicLong nextSeqId = new AtomicLong();
    private final Thread thread;
    private volatile boolean accepting = true;
    private volatile boolean stopped;
    private volatile Throwable fatal; // why the engine thread died, if it did
    private final AtomicBoolean closed = new AtomicBoolean();
    private volatile EngineStats stats;

    // engine thread only
    private final Map<Long, SampleState> bySeq = new HashMap<>();
    private final Map<Long, Sequence> batch = new HashMap<>(); // the runner's persistent batch
    private final StreamEmitter emitter;
    private long generatedTokens, steps;
    private long runnerNanos, hostNanos;  // engine-thread time inside and around runner.step (see EngineStats)
    /**
     * A launched step whose picks are not processed yet (see {@link #OVERLAP_PROPERTY}): the samples that became
     * ready (null: skip) and their rows in it, the pending picks, and every sample of the step (to end on failure).
     */
    private record InFlight(SampleState[] ready, int[] rows, ModelRunner.PendingStep pending, SampleState[] all) {}

    private InFlight inFlight;

    /**
     * Starts an engine over a model. The engine owns the KV cache it allocates; the model stays the
     * caller's to close, after the engine.
     */
    public LlmEngine(String modelName, LlamaModel model, Tokenizer tokenizer, List<Integer> eosTokenIds,
                     EngineConfig config) {
        this.modelName = modelName;
        this.modelConfig = model.config();
        this.tokenizer = tokenizer;
        this.eosTokenIds = List.copyOf(eosTokenIds);
        this.config = config;
        this.backendLock = model.backend();
        synchronized (backendLock) {
            this.runner = ModelRunner.withExternalBlocks(model, new ModelRunner.CacheConfig(config.blockSize(),
                    config.numBlocks(), config.maxModelLen(), config.kvCacheDtype()));
        }
        this.deviceSampling = model.backend().supportsSampling() && deviceSamplingRequested();
        this.overlap = model.backend().supportsAsyncSteps()
                && Boolean.parseBoolean(System.getProperty(OVERLAP_PROPERTY, "true"));
        this.kv = new KvCacheManager(new BlockPool(config.numBlocks(), config.blockSize()), config.enablePrefixCaching());
        this.scheduler = new Scheduler(config.schedulerConfig(), kv);
        this.stats = new EngineStats(0, 0, config.numBlocks(), 0, 0, 0, 0, 0, 0, 0, 0);
        this.emitter = new StreamEmitter("lathe-engine-streams", StreamEmitter.threadRequested());
        this.thread = Thread.ofPlatform().name("lathe-engine").daemon().unstarted(this::loop);
        thread.start();
    }

    /** An engine over a loaded model, with its tokenizer and end-of-sequence ids. */
    public static LlmEngine of(LoadedModel model, EngineConfig config) {
        return new LlmEngine(model.name(), model.model(), model.tokenizer().orElse(null), model.eosTokenIds(), config);
    }

    @Override
    public String modelName() { return modelName; }

    @Override
    public ModelConfig modelConfig() { return modelConfig; }

    @Override
    public int maxModelLen() { return config.maxModelLen(); }

    @Override
    public Optional<Tokenizer> tokenizer() { return Optional.ofNullable(tokenizer); }

    public EngineConfig config() { return config; }

    @Override
    public EngineStats stats() { return stats; }

    @Override
    public RequestStream submit(EngineRequest request) {
        if (fatal != null) {
            throw new IllegalStateException("the engine stopped after an internal error (" + fatal + "); request "
                    + request.id() + " refused; restart the engine", fatal);
        }
        if (!accepting) throw new IllegalStateException("the engine is shutting down; request " + request.id() + " refused");
        RequestState state = RequestState.create(request, modelConfig, config, tokenizer, eosTokenIds,
                nextSeqId.getAndAdd(request.params().n()), this::abort);
        if (active.putIfAbsent(request.id(), state) != null) {
            throw new IllegalArgumentException("request id " + request.id() + " is already in flight; ids must be unique");
        }
        int q = queued.incrementAndGet();
        if (q > config.maxWaiting()) {
            queued.decrementAndGet();
            active.remove(request.id());
            throw new EngineOverloadedException(q - 1, config.maxWaiting(), 1);
        }
        inbox.add(new Add(state));
        return state.stream;
    }

    private void abort(String requestId) {
        inbox.add(new Abort(requestId));
    }

    @Override
    public void shutdown(long graceMillis) {
        accepting = false;
        if (closed.getAndSet(true)) return;
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(Math.max(0, graceMillis));
        while (!active.isEmpty() && System.nanoTime() < deadline && thread.isAlive()) {
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        for (String id : List.copyOf(active.keySet())) abort(id);
        stopped = true;
        inbox.add(new Abort("")); // wakes the thread
        try {
            thread.join(TimeUnit.SECONDS.toMillis(30));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (!thread.isAlive()) {
            synchronized (backendLock) {
                runner.close();
            }
        }
    }

    private void loop() {
        try {
            while (true) {
                if (!takeMessages()) break;
                if (!scheduler.hasUnfinished()) continue;
                step();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Throwable t) {
            // a bug in the engine itself: end every request with the error rather than leave streams hanging
            fatal = t;
            accepting = false;
            for (RequestState r : List.copyOf(active.values())) {
                try {
                    abortRequest(r, t);
                } catch (RuntimeException again) {
                    emitter.end(r.stream, t); // scheduling state is broken: at least end the stream
                }
            }
        } finally {
            if (inFlight != null) inFlight.pending().close();
            emitter.close();  // delivers every queued delta and end
        }
    }

    /** Applies queued messages, waiting for one when idle. False once shut down with nothing left. */
    private boolean takeMessages() throws InterruptedException {
        Message m = scheduler.hasUnfinished() ? inbox.poll() : inbox.poll(100, TimeUnit.MILLISECONDS);
        boolean any = m != null;
        while (m != null) {
            switch (m) {
                case Add a -> {
                    SampleState lead = a.request().samples[0];
                    lead.started = true;
                    bySeq.put(lead.seqId, lead);
                    var r = a.request().request;
                    scheduler.add(lead.seqId, r.promptIds(), r.cacheSalt(), r.params().n(), a.request().maxTokens);
                }
                case Abort ab -> {
                    RequestState r = active.get(ab.requestId());
                    if (r != null) abortRequest(r, null);
                }
            }
            m = inbox.poll();
        }
        if (any) publishStats();  // a step publishes its own
        emitter.flush();  // after the stats, so a reader that sees a stream end sees the stats of its step
        return !(stopped && active.isEmpty() && !scheduler.hasUnfinished());
    }

    private void step() {
        long start = System.nanoTime();
        long inRunner = 0;
        try {
            inRunner = stepTimed();
        } finally {
            hostNanos += System.nanoTime() - start - inRunner;
            runnerNanos += inRunner;
        }
        publishStats();  // now, not at the next loop turn: a reader waiting on the last request sees its step
        emitter.flush();
    }

    /** One engine step; returns the nanoseconds spent inside the model runner. */
    private long stepTimed() {
        SchedulerOutput out = scheduler.schedule();
        for (long id : out.preempted()) {
            batch.remove(id);
            SampleState st = bySeq.get(id);
            if (st != null) st.seq = null;
        }
        if (out.isEmpty() && inFlight != null) return completeInFlight();  // every sequence waits for its pick
        if (out.isEmpty()) {
            throw new IllegalStateException("the scheduler found nothing to run with " + scheduler.numWaiting()
                    + " waiting and " + scheduler.numRunning() + " running; " + kv.numFreeBlocks() + " of "
                    + kv.numBlocks() + " KV blocks free");
        }
        var seqs = new ArrayList<Sequence>(out.numSequences());
        int[] counts = new int[out.numSequences()];
        var states = new SampleState[out.numSequences()];  // per row, looked up once
        for (var ns : out.newSequences()) {
            var seq = new Sequence(ns.seqId(), ns.tokens());
            for (int b : ns.blocks()) seq.addBlock(b);
            seq.setComputed(ns.numComputed());
            batch.put(ns.seqId(), seq);
            SampleState st = bySeq.get(ns.seqId());
            if (st.index == 0 && st.request.numCached < 0) {
                st.request.numCached = ns.numComputed();
                queued.decrementAndGet();
            }
            st.seq = seq;
            st.row = seqs.size();
            states[seqs.size()] = st;
            counts[seqs.size()] = ns.numScheduled();
            seqs.add(seq);
        }
        for (var rs : out.running()) {
            Sequence seq = batch.get(rs.seqId());
            for (int b : rs.newBlocks()) seq.addBlock(b);
            SampleState st = bySeq.get(rs.seqId());
            if (st != null) st.row = seqs.size();
            states[seqs.size()] = st;
            counts[seqs.size()] = rs.numScheduled();
            seqs.add(seq);
        }
        // a sequence gets its logits row in full only if it samples this step and needs more than the argmax,
        // and, with device sampling, more than the backend's draw
        // and a sequence whose last token is the previous step's pick, still on the device, takes it from its row there
        boolean[] fullRows = new boolean[seqs.size()];
        SampleSpec[] specs = null;
        int[] tokenFrom = null;
        for (int i = 0; i < fullRows.length; i++) {
            Sequence seq = seqs.get(i);
            if (seq.numComputed() + counts[i] < seq.numTokens()) continue; // mid-prompt: nothing sampled
            SampleState st = states[i];
            if (st != null && st.pendingRow >= 0) {
                if (tokenFrom == null) {
                    tokenFrom = new int[seqs.size()];
                    java.util.Arrays.fill(tokenFrom, -1);
                }
                tokenFrom[i] = st.pendingRow;
            }
            boolean logprobs = st != null && st.request.request.params().logprobs() != null;
            boolean forks = st != null && st.index == 0 && st.output.numOutput() == 0 && scheduler.pendingForks(seq.id()) > 0;
            fullRows[i] = st == null || !st.sampler.isPlainArgmax() || logprobs || forks;
            if (fullRows[i] && deviceSampling && st != null && !logprobs && !forks) {
                SampleSpec spec = st.sampler.deviceSpec();
                if (spec != null) {
                    if (specs == null) specs = new SampleSpec[fullRows.length];
                    specs[i] = spec;
                    fullRows[i] = false;
                }
            }
        }
        // a step of plain greedy rows only may run ahead of its outputs' processing
        boolean ahead = overlap && specs == null;
        for (int i = 0; ahead && i < fullRows.length; i++) ahead = !fullRows[i];
        ModelRunner.StepLogits logits = null;
        ModelRunner.PendingStep launched = null;
        ModelRunner.PendingStep previous = inFlight == null ? null : inFlight.pending();
        long runnerStart = System.nanoTime();
        try {
            synchronized (backendLock) {
                if (ahead) launched = runner.launch(seqs, counts, tokenFrom, previous);
                else logits = runner.step(seqs, counts, fullRows, specs, tokenFrom, previous);
            }
        } catch (RuntimeException e) {
            long spent = System.nanoTime() - runnerStart;
            if (inFlight != null) spent += completeInFlight();  // the step before this one stands on its own
            // the step failed as a whole: end the requests in it, keep serving the others
            for (SampleState st : states) if (st != null && !st.finished) abortRequest(st.request, e);
            return spent;
        }
        long inRunner = System.nanoTime() - runnerStart;
        steps++;
        // the previous step's tokens, while the device computes this one
        if (inFlight != null) inRunner += completeInFlight();
        List<Long> ready = scheduler.update(out);
        if (!ahead) {
            processOutputs(ready, logits);
            return inRunner;
        }
        // each ready sequence holds a placeholder for the token this step picks, so the next step can compute it,
        // unless that token is its last by length
        var readyStates = new SampleState[ready.size()];
        int[] rows = new int[ready.size()];
        for (int i = 0; i < rows.length; i++) {
            long seqId = ready.get(i);
            SampleState st = bySeq.get(seqId);
            if (st == null || st.finished) continue;
            readyStates[i] = st;
            rows[i] = st.row;
            if (st.output.numOutput() + 1 < st.request.maxTokens) {
                st.pendingPos = scheduler.numTokens(seqId);
                st.pendingRow = st.row;
                scheduler.appendToken(seqId, PLACEHOLDER);
                st.seq.append(PLACEHOLDER);
            }
        }
        inFlight = new InFlight(readyStates, rows, launched, states);
        return inRunner;
    }

    /**
     * Waits for the in-flight step's picks and processes them as {@link #processOutputs} does: placeholders take
     * their tokens, deltas go out, stops end their samples. Returns the nanoseconds spent waiting.
     */
    private long completeInFlight() {
        InFlight f = inFlight;
        inFlight = null;
        long start = System.nanoTime();
        ModelRunner.StepLogits logits;
        try {
            logits = f.pending().await();
        } catch (RuntimeException e) {
            for (SampleState st : f.all()) if (st != null && !st.finished) abortRequest(st.request, e);
            return System.nanoTime() - start;
        } finally {
            f.pending().close();  // the step after it, if any, is queued already: the device reads its picks first
        }
        long waited = System.nanoTime() - start;
        for (int i = 0; i < f.rows().length; i++) {
            SampleState st = f.ready()[i];
            if (st == null || st.finished) continue;  // aborted, or ended by a sibling's failure
            long seqId = st.seqId;
            try {
                int token = logits.argmax(f.rows()[i]);
                if (st.pendingRow >= 0) {
                    scheduler.setToken(seqId, st.pendingPos, token);
                    if (st.seq != null) st.seq.setToken(st.pendingPos, token);  // null: preempted since
                    st.pendingRow = -1;
                } else {
                    scheduler.appendToken(seqId, token);
                    if (st.seq != null) st.seq.append(token);
                }
                emit(st, token, null);
            } catch (RuntimeException e) {
                abortRequest(st.request, e);
            }
        }
        return waited;
    }

    /** Samples, stop checks and deltas for the sequences whose tokens are all computed. */
    private void processOutputs(List<Long> ready, ModelRunner.StepLogits logits) {
        for (long seqId : ready) {
            SampleState st = bySeq.get(seqId);
            if (st == null || st.finished) continue; // a sibling's failure ended its request earlier in this loop
            RequestState r = st.request;
            try {
                int rowIndex = st.row;
                if (logits.hasSample(rowIndex)) {
                    int token = logits.sample(rowIndex);
                    scheduler.appendToken(seqId, token);
                    st.seq.append(token);
                    emit(st, token, null);
                    continue;
                }
                if (!logits.hasRow(rowIndex)) {
                    int token = logits.argmax(rowIndex);
                    scheduler.appendToken(seqId, token);
                    st.seq.append(token);
                    emit(st, token, null);
                    continue;
                }
                float[] row = logits.row(rowIndex);
                if (st.index == 0 && st.output.numOutput() == 0 && scheduler.pendingForks(seqId) > 0) {
                    // the prompt is computed once: every sample draws its first token from these logits
                    for (int i = 1; i < r.samples.length; i++) {
                        SampleState child = r.samples[i];
                        if (child.started || child.finished) continue;
                        int token = child.sampler.sample(row);
                        child.started = true;
                        bySeq.put(child.seqId, child);
                        scheduler.fork(seqId, child.seqId, token);
                        emit(child, token, row);
                    }
                }
                int token = r.request.params().logprobs() != null ? st.sampler.sample(row) : st.sampler.sampleInPlace(row);
                scheduler.appendToken(seqId, token);
                st.seq.append(token);
                emit(st, token, row);
            } catch (RuntimeException e) {
                abortRequest(r, e);
            }
        }
    }

    /** Accepts a sampled token (already appended to the scheduler's copy) and pushes its delta. */
    private void emit(SampleState st, int token, float[] rawLogits) {
        RequestState r = st.request;
        SamplingParams p = r.request.params();
        st.sampler.accept(token);
        generatedTokens++;
        var step = st.output.accept(token);
        FinishReason reason = step.finishReason();
        List<Logprobs.TokenLogprobs> lp = p.logprobs() == null ? null : List.of(Logprobs.of(rawLogits, token, p.logprobs()));
        emitter.push(r.stream, new RequestOutput(r.request.id(), st.index, new int[]{token}, step.text(), lp, reason,
                reason == FinishReason.STOP ? st.output.stopReason() : null, r.request.promptIds().length,
                st.output.numOutput(), Math.max(0, r.numCached)));
        if (reason != null) finishSample(st);
    }

    private void finishSample(SampleState st) {
        st.finished = true;
        if (st.started) {
            scheduler.finish(st.seqId);
            batch.remove(st.seqId);
            bySeq.remove(st.seqId);
            st.seq = null;
        }
        RequestState r = st.request;
        if (++r.numFinished == r.samples.length) {
            active.remove(r.request.id());
            emitter.end(r.stream, null);
        }
    }

    /** Ends every unfinished sample of a request with ABORT, freeing its blocks at once. */
    private void abortRequest(RequestState r, Throwable cause) {
        if (r.numCached < 0 && r.numFinished == 0) queued.decrementAndGet(); // never reached the running set
        r.numCached = Math.max(0, r.numCached);
        for (SampleState st : r.samples) {
            if (st.finished) continue;
            st.finished = true;
            if (st.started) {
                scheduler.finish(st.seqId);
                batch.remove(st.seqId);
                bySeq.remove(st.seqId);
                st.seq = null;
            }
            String tail = st.output.abort().text();
            emitter.push(r.stream, new RequestOutput(r.request.id(), st.index, new int[0], tail, null, FinishReason.ABORT,
                    null, r.request.promptIds().length, st.output.numOutput(), r.numCached));
        }
        r.numFinished = r.samples.length;
        active.remove(r.request.id());
        emitter.end(r.stream, cause);
    }

    private void publishStats() {
        stats = new EngineStats(queued.get(), scheduler.numRunning(),
                kv.numBlocks(), kv.numUsedBlocks(), kv.prefixQueries(), kv.prefixHits(), scheduler.preemptions(),
                generatedTokens, steps, runnerNanos, hostNanos);
    }
}
