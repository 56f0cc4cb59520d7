package dev.lathe.core.generate;

import dev.lathe.core.sampling.Logprobs;

import java.util.Arrays;
import java.util.List;

/**
 * Perplexity of a token stream in non-overlapping windows. Window {@code w} is tokens
 * {@code [w * size, (w + 1) * size)}; it runs as one sequence, prefixed with BOS when {@code bos != null},
 * and every token of it that has a preceding token in that sequence is scored (all {@code size} with a
 * BOS prefix, {@code size - 1} without). A final partial window is scored the same way. The result is
 * {@code exp(total negative log-likelihood / scored tokens)}, summed in double.
 */
public final class Perplexity {
    public record Result(double perplexity, double meanNll, long scoredTokens, int windows) {}

    private Perplexity() {}

    public static Result evaluate(ModelRunner runner, int[] tokens, int windowSize, int maxWindows, Integer bos) {
        if (windowSize < 2) throw new IllegalArgumentException("window size must be at least 2, got " + windowSize);
        int needed = windowSize + (bos != null ? 1 : 0);
        if (needed > runner.maxModelLen()) {
            throw new IllegalArgumentException("a window of " + needed + " tokens exceeds the max model length "
                    + runner.maxModelLen() + "; lower --window");
        }
        double nll = 0;
        long scored = 0;
        int windows = 0;
        for (int start = 0; start < tokens.length && (maxWindows <= 0 || windows < maxWindows); start += windowSize) {
            int end = Math.min(tokens.length, start + windowSize);
            int[] w = Arrays.copyOfRange(tokens, start, end);
            int[] input = w;
            if (bos != null) {
                input = new int[w.length + 1];
                input[0] = bos;
                System.arraycopy(w, 0, input, 1, w.length);
            }
            if (input.length < 2) break;
            var seq = new Sequence(-1 - windows, input);
            try {
                var logits = runner.step(List.of(seq), new int[]{input.length}, true);
                int vocab = logits.vocab();
                for (int i = 0; i + 1 < input.length; i++) {
                    nll += -logProb(logits.data(), i * vocab, vocab, input[i + 1]);
                    scored++;
                }
            } finally {
                runner.free(seq);
            }
            windows++;
        }
        if (scored == 0) throw new IllegalArgumentException("no tokens to score: the text is too short");
        double mean = nll / scored;
        return new Result(Math.exp(mean), mean, scored, windows);
    }

    /** log softmax(row)[target], in double. */
    static double logProb(float[] data, int offset, int vocab, int target) {
        return data[offset + target] - Logprobs.logSumExp(data, offset, vocab);
    }
}
