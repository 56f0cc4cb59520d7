package dev.lathe.core.generate;

import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Sampler;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.IncrementalDetokenizer;
import dev.lathe.core.tokenizer.Tokenizer;

import java.util.List;
import java.util.function.Consumer;

/**
 * Generates one sequence at a time: prefill the prompt, then sample, check for stops and detokenise
 * one token per step. (In-flight batching of many requests replaces this loop with the scheduler.)
 */
public final class Generator {
    private final ModelRunner runner;
    private final Tokenizer tokenizer; // null for synthetic models: text is then the ids
    private final List<Integer> eosTokenIds;
    private long nextId;

    public record Result(int[] promptIds, int[] outputIds, String text, FinishReason finishReason,
                         long prefillNanos, long decodeNanos) {
        public double decodeTokensPerSecond() {
            int n = outputIds.length - 1;
            return n <= 0 || decodeNanos == 0 ? 0 : n / (decodeNanos / 1e9);
        }
    }

    public Generator(ModelRunner runner, Tokenizer tokenizer, List<Integer> eosTokenIds) {
        this.runner = runner;
        this.tokenizer = tokenizer;
        this.eosTokenIds = List.copyOf(eosTokenIds);
    }

    /**
     * Generates from {@code promptIds}; {@code onText} receives each piece of text as soon as it may be
     * shown (never half a UTF-8 character, never part of a stop string).
     */
    public Result generate(int[] promptIds, SamplingParams params, Consumer<String> onText) {
        int limit = runner.maxModelLen();
        if (promptIds.length >= limit) {
            throw new ContextLengthException(promptIds.length + 1, limit);
        }
        int maxTokens = params.maxTokens() == null ? limit - promptIds.length : params.maxTokens();
        if (promptIds.length + maxTokens > limit) {
            throw new ContextLengthException(promptIds.length + maxTokens, limit);
        }
        var seq = new Sequence(nextId++, promptIds);
        var sampler = new Sampler(params, runner.config().vocabSize(), promptIds, eosTokenIds);
        // synthetic models have no tokenizer: their text is the token ids
        OutputProcessor.TokenText tokenText = OutputProcessor.TokenText.of(tokenizer == null ? null
                : new IncrementalDetokenizer(tokenizer, promptIds, params.skipSpecialTokens()));
        var output = new OutputProcessor(params, eosTokenIds, tokenText, maxTokens);
        var text = new StringBuilder();
        FinishReason reason = null;
        long t0 = System.nanoTime(), tPrefill = 0;
        try {
            int count = promptIds.length;
            while (reason == null) {
                boolean argmax = sampler.isPlainArgmax();
                var logits = runner.step(List.of(seq), new int[]{count}, new boolean[]{!argmax});
                if (tPrefill == 0) tPrefill = System.nanoTime();
                int token = argmax ? logits.argmax(0) : sampler.sampleInPlace(logits.row(0));
                sampler.accept(token);
                seq.append(token);
                var step = output.accept(token);
                String visible = step.text();
                reason = step.finishReason();
                if (!visible.isEmpty()) {
                    text.append(visible);
                    onText.accept(visible);
                }
                count = 1;
            }
        } finally {
            runner.free(seq);
        }
        long t1 = System.nanoTime();
        return new Result(promptIds, seq.outputTokens(), text.toString(), reason, tPrefill - t0, t1 - tPrefill);
    }
}
