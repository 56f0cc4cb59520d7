package dev.lathe.core.generate;

import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.sampling.StopChecker;
import dev.lathe.core.tokenizer.IncrementalDetokenizer;

import java.util.Collection;

/**
 * The output side of one sample, token by token: the text a token adds (incremental detokenisation),
 * stop tokens and stop strings (through {@link StopChecker}, which holds back a possible stop string),
 * the end at {@code maxTokens} with LENGTH, and, when the sample ends other than by a stop string, the
 * bytes of an unfinished character (shown as U+FFFD, as Hugging Face's decode shows them). Shared by the
 * one-sequence {@link Generator} and the batching engine so both end samples the same way.
 */
public final class OutputProcessor {
    /** Text of a stream of output tokens: what each token adds, and what was held back at the end. */
    public interface TokenText {
        String add(int token);

        String flush();

        /**
         * Text from an incremental detokeniser, or, for a model without a tokenizer (synthetic models), the
         * token ids themselves separated by spaces, so every token still shows up as text (in streams, in
         * the serving benchmark) rather than as nothing.
         */
        static TokenText of(IncrementalDetokenizer detok) {
            if (detok == null) {
                return new TokenText() {
                    private boolean first = true;

                    @Override
                    public String add(int token) {
                        String s = (first ? "" : " ") + token;
                        first = false;
                        return s;
                    }

                    @Override public String flush() { return ""; }
                };
            }
            return new TokenText() {
                @Override public String add(int token) { return detok.add(token); }
                @Override public String flush() { return detok.flush(); }
            };
        }
    }

    /** What one token produced: the text that may be shown now, and the finish reason or null. */
    public record Step(String text, FinishReason finishReason) {}

    private final StopChecker stop;
    private final TokenText text;
    private final int maxTokens;
    private int numOutput;

    public OutputProcessor(SamplingParams params, Collection<Integer> eosTokenIds, TokenText text, int maxTokens) {
        this.stop = new StopChecker(params, eosTokenIds);
        this.text = text;
        this.maxTokens = maxTokens;
    }

    /** Handles the next output token (the sampler has already accepted it). */
    public Step accept(int token) {
        numOutput++;
        var r = stop.onToken(token, text.add(token), numOutput);
        String visible = r.visibleDelta();
        FinishReason reason = r.finishReason();
        if (reason == null && numOutput >= maxTokens) {
            visible += stop.finish(FinishReason.LENGTH).visibleDelta();
            reason = FinishReason.LENGTH;
        }
        if (reason != null && stop.matchedStopString() == null) visible += text.flush();
        return new Step(visible, reason);
    }

    /** Ends the sample with ABORT, releasing text held back for a possible stop string. */
    public Step abort() {
        return new Step(stop.finish(FinishReason.ABORT).visibleDelta(), FinishReason.ABORT);
    }

    /** Output tokens handled so far. */
    public int numOutput() { return numOutput; }

    /** The stop string or stop token id (Integer) that ended the sample, or null. */
    public Object stopReason() {
        return stop.matchedStopString() != null ? stop.matchedStopString() : stop.matchedStopTokenId();
    }
}
