package dev.lathe.core.sampling;

import java.util.Collection;
import java.util.Set;
import java.util.TreeSet;

/**
 * Decides after each token whether a sequence is finished, and which of its text may be streamed.
 * One instance per sequence; a generation loop calls {@link #onToken} once per sampled token and
 * shows {@link Result#visibleDelta()}, and calls {@link #finish} if it ends the sequence for its own
 * reasons (context full, abort).
 *
 * <p>Checks, in vLLM's order, for the {@code n}-th output token:
 * <ol>
 *   <li>while {@code n <= minTokens} nothing but the length limit stops (the sampler also keeps EOS
 *       and stop token ids from being sampled then);</li>
 *   <li>an EOS id (unless {@code ignoreEos}) or a stop token id: STOP; that token's text is not shown,
 *       held-back text is;</li>
 *   <li>a stop string completed by this token's text: STOP, text cut before the stop string (or after
 *       it, with {@code includeStopStrInOutput});</li>
 *   <li>{@code n >= maxTokens}: LENGTH, all text shown.</li>
 * </ol>
 */
public final class StopChecker {
    /** What a step produced: text that may be shown now, and the finish reason or null. */
    public record Result(String visibleDelta, FinishReason finishReason) {
        public boolean finished() {
            return finishReason != null;
        }
    }

    private final Set<Integer> eosIds;
    private final Set<Integer> stopTokenIds;
    private final boolean ignoreEos;
    private final Integer maxTokens;
    private final int minTokens;
    private final StopStringMatcher text;
    private FinishReason finished;
    private Integer stopTokenId;

    public StopChecker(SamplingParams params, Collection<Integer> eosTokenIds) {
        this.eosIds = Set.copyOf(eosTokenIds);
        this.stopTokenIds = new TreeSet<>(params.stopTokenIds());
        this.ignoreEos = params.ignoreEos();
        this.maxTokens = params.maxTokens();
        this.minTokens = params.minTokens();
        this.text = new StopStringMatcher(params.stop(), params.includeStopStrInOutput());
    }

    /**
     * Handles the {@code numGenerated}-th output token (1-based, this one included) whose text is
     * {@code textDelta}.
     *
     * @throws IllegalStateException if the sequence already finished
     */
    public Result onToken(int tokenId, String textDelta, int numGenerated) {
        if (finished != null) {
            throw new IllegalStateException("token " + tokenId + " arrived after the sequence finished (" + finished
                    + "); stop calling onToken once a result has a finish reason");
        }
        boolean mayStop = numGenerated > minTokens;
        if (mayStop && ((!ignoreEos && eosIds.contains(tokenId)) || stopTokenIds.contains(tokenId))) {
            if (!eosIds.contains(tokenId) || ignoreEos) stopTokenId = tokenId;
            return finish(FinishReason.STOP);
        }
        String visible = text.emit(textDelta, mayStop);
        if (text.matched() != null) {
            finished = FinishReason.STOP;
            return new Result(visible, finished);
        }
        if (maxTokens != null && numGenerated >= maxTokens) {
            finished = FinishReason.LENGTH;
            return new Result(visible + text.flush(), finished);
        }
        return new Result(visible, null);
    }

    /** Ends the sequence with {@code reason}, releasing any held-back text. Idempotent after the first. */
    public Result finish(FinishReason reason) {
        if (finished != null) return new Result("", finished);
        finished = reason;
        return new Result(text.flush(), reason);
    }

    /** The finish reason, or null while running. */
    public FinishReason finishReason() {
        return finished;
    }

    /** The stop string that ended the sequence, or null (vLLM's and OpenAI's {@code stop_reason}). */
    public String matchedStopString() {
        return text.matched();
    }

    /** The stop token id (not EOS) that ended the sequence, or null. */
    public Integer matchedStopTokenId() {
        return stopTokenId;
    }
}
