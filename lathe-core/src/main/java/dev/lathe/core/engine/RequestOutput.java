package dev.lathe.core.engine;

import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Logprobs;

import java.util.List;

/**
 * One delta of one sample ({@code index} in {@code 0..n-1}) of a request: the tokens sampled since the
 * previous delta, the text that may be shown now (never half a character, never part of a stop string),
 * and, on the last delta of that sample, its finish reason.
 *
 * @param logprobs      one entry per token of {@code tokenIds} when the request asked for logprobs, else null
 * @param stopReason    the matched stop string or stop token id (Integer) when finishReason is STOP because of
 *                      one; null otherwise
 * @param numPromptTokens   tokens of the prompt
 * @param numOutputTokens   tokens generated so far by this sample, these included
 * @param numCachedTokens   prompt tokens served from the prefix cache
 */
public record RequestOutput(String requestId, int index, int[] tokenIds, String text,
                            List<Logprobs.TokenLogprobs> logprobs, FinishReason finishReason, Object stopReason,
                            int numPromptTokens, int numOutputTokens, int numCachedTokens) {
    public boolean finished() { return finishReason != null; }
}
