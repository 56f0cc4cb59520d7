package dev.lathe.core.engine;

import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Logprobs;
import dev.lathe.core.sampling.SamplingParams;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Offline batches over an {@link Engine}: submit every prompt at once, wait for all, return the results
 * in prompt order. When the engine's waiting queue is full, submission waits for room.
 */
public final class LLM {
    private static final AtomicLong BATCH = new AtomicLong();

    /** One sample's whole output. {@code logprobs} has one entry per token when asked for, else null. */
    public record Completion(int index, int[] tokenIds, String text, FinishReason finishReason, Object stopReason,
                             List<Logprobs.TokenLogprobs> logprobs) {}

    /** A prompt's results, samples in index order; {@code error} is non-null if the engine failed it. */
    public record Result(int[] promptIds, List<Completion> outputs, int numCachedTokens, Throwable error) {}

    private final Engine engine;

    public LLM(Engine engine) {
        this.engine = engine;
    }

    public Engine engine() { return engine; }

    /**
     * Completes each prompt. Text goes through the engine's tokenizer (with BOS as the tokenizer adds it);
     * a model without one takes the prompt's UTF-8 bytes, modulo the vocabulary, as token ids.
     */
    public List<Result> generate(List<String> prompts, SamplingParams params) {
        var ids = new ArrayList<int[]>(prompts.size());
        for (String p : prompts) ids.add(encode(p));
        return generateIds(ids, params);
    }

    /** Completes each tokenised prompt. */
    public List<Result> generateIds(List<int[]> prompts, SamplingParams params) {
        String batch = "llm-" + BATCH.incrementAndGet() + "-";
        var streams = new ArrayList<RequestStream>(prompts.size());
        try {
            for (int i = 0; i < prompts.size(); i++) {
                var req = new EngineRequest(batch + i, prompts.get(i), params, null);
                while (true) {
                    try {
                        streams.add(engine.submit(req));
                        break;
                    } catch (EngineOverloadedException e) {
                        Thread.sleep(5);
                    }
                }
            }
            var results = new ArrayList<Result>(prompts.size());
            for (int i = 0; i < prompts.size(); i++) results.add(collect(prompts.get(i), streams.get(i), params));
            return results;
        } catch (InterruptedException e) {
            streams.forEach(RequestStream::abort);
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while generating " + prompts.size() + " prompts", e);
        }
    }

    private static Result collect(int[] prompt, RequestStream stream, SamplingParams params) throws InterruptedException {
        int n = params.n();
        var tokens = new int[n][];
        var texts = new StringBuilder[n];
        var reasons = new FinishReason[n];
        var stopReasons = new Object[n];
        var logprobs = new ArrayList<List<Logprobs.TokenLogprobs>>();
        for (int i = 0; i < n; i++) {
            tokens[i] = new int[0];
            texts[i] = new StringBuilder();
            logprobs.add(params.logprobs() == null ? null : new ArrayList<>());
        }
        int cached = 0;
        RequestOutput o;
        while ((o = stream.next()) != null) {
            int i = o.index();
            int old = tokens[i].length;
            tokens[i] = Arrays.copyOf(tokens[i], old + o.tokenIds().length);
            System.arraycopy(o.tokenIds(), 0, tokens[i], old, o.tokenIds().length);
            texts[i].append(o.text());
            if (o.logprobs() != null) logprobs.get(i).addAll(o.logprobs());
            if (o.finished()) {
                reasons[i] = o.finishReason();
                stopReasons[i] = o.stopReason();
            }
            cached = o.numCachedTokens();
        }
        var outs = new ArrayList<Completion>(n);
        for (int i = 0; i < n; i++) {
            outs.add(new Completion(i, tokens[i], texts[i].toString(), reasons[i], stopReasons[i], logprobs.get(i)));
        }
        return new Result(prompt, outs, cached, stream.error());
    }

    private int[] encode(String text) {
        if (engine.tokenizer().isPresent()) return engine.tokenizer().get().encode(text, true);
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        int vocab = engine.modelConfig().vocabSize();
        int[] ids = new int[Math.max(1, bytes.length)];
        for (int i = 0; i < bytes.length; i++) ids[i] = (bytes[i] & 0xFF) % vocab;
        return ids;
    }
}
