package dev.lathe.server;

import dev.lathe.core.engine.RequestOutput;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Logprobs;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Drains one request's stream, keeping each sample's text, tokens and logprobs, and records its
 * latencies in the metrics when it ends. Deltas can also be handed on as they come (streaming).
 */
final class Generation {
    /** What one sample ({@code index}) produced. */
    static final class Sample {
        final StringBuilder text = new StringBuilder();
        final List<Integer> tokens = new ArrayList<>();
        final List<Logprobs.TokenLogprobs> logprobs = new ArrayList<>();
        FinishReason finishReason;
        Object stopReason;
        int outputTokens;
    }

    private final ServedModel model;
    private final LatheServer server;
    private final RequestStream stream;
    private final long start;
    private final List<Sample> samples = new ArrayList<>();
    private long firstTokenAt;
    private int promptTokens;
    private int cachedTokens;

    Generation(ServedModel model, LatheServer server, RequestStream stream, long startNanos, int n, int promptTokens) {
        this.model = model;
        this.server = server;
        this.stream = stream;
        this.start = startNanos;
        this.promptTokens = promptTokens;
        for (int i = 0; i < n; i++) samples.add(new Sample());
    }

    /**
     * Takes every delta until the stream ends, passing each to {@code onDelta} after it is recorded.
     * If {@code onDelta} throws (the client went away), the request is aborted and the exception rethrown.
     */
    void run(Consumer<RequestOutput> onDelta) {
        server.track(stream);
        try {
            RequestOutput out;
            while ((out = stream.next()) != null) {
                accept(out);
                onDelta.accept(out);
            }
        } catch (InterruptedException e) {
            stream.abort();
            Thread.currentThread().interrupt();
            throw ApiException.unavailable("The server is shutting down; the request was cancelled.");
        } catch (RuntimeException e) {
            stream.abort();
            throw e;
        } finally {
            server.untrack(stream);
            long end = System.nanoTime();
            server.metrics().recordGeneration(model.name(), firstTokenAt == 0 ? 0 : firstTokenAt - start, end - start,
                    completionTokens() / Math.max(1, samples.size()), promptTokens);
        }
    }

    private void accept(RequestOutput out) {
        if (out.index() < 0 || out.index() >= samples.size()) {
            throw new IllegalStateException("engine returned sample " + out.index() + " of a request for " + samples.size());
        }
        if (firstTokenAt == 0 && out.tokenIds() != null && out.tokenIds().length > 0) firstTokenAt = System.nanoTime();
        Sample s = samples.get(out.index());
        if (out.text() != null) s.text.append(out.text());
        if (out.tokenIds() != null) for (int t : out.tokenIds()) s.tokens.add(t);
        if (out.logprobs() != null) s.logprobs.addAll(out.logprobs());
        s.outputTokens = out.numOutputTokens();
        if (out.finished()) {
            s.finishReason = out.finishReason();
            s.stopReason = out.stopReason();
        }
        promptTokens = out.numPromptTokens();
        cachedTokens = out.numCachedTokens();
    }

    List<Sample> samples() { return samples; }

    int promptTokens() { return promptTokens; }

    int cachedTokens() { return cachedTokens; }

    int completionTokens() {
        int sum = 0;
        for (Sample s : samples) sum += s.outputTokens;
        return sum;
    }
}
