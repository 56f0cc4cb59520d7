package dev.lathe.core.sampling;

/**
 * Log-probabilities for the OpenAI {@code logprobs} report: log-softmax of a logits row (the model's
 * raw logits, or ones already passed through {@link Sampler#processLogits}), the chosen token's value
 * and the {@code n} most likely alternatives. Sums in double; no allocation beyond the result.
 */
public final class Logprobs {
    private Logprobs() {}

    /**
     * One position's report. {@code topIds} is sorted by decreasing log-probability, the lower id
     * first on ties; {@code topLogprobs[i]} belongs to {@code topIds[i]}.
     */
    public record TokenLogprobs(int token, float logprob, int[] topIds, float[] topLogprobs) {}

    /** {@code log(sum(exp(logits)))}, computed stably; -infinity if every logit is. */
    public static double logSumExp(float[] logits) {
        return logSumExp(logits, 0, logits.length);
    }

    /** {@link #logSumExp(float[])} of {@code data[offset .. offset + length)}: one row of a packed batch. */
    public static double logSumExp(float[] data, int offset, int length) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = offset; i < offset + length; i++) {
            float x = data[i];
            if (x != x) throw new IllegalStateException("logits[" + (i - offset) + "] is NaN; the model's output is invalid");
            if (x > max) max = x;
        }
        if (max == Float.NEGATIVE_INFINITY || max == Float.POSITIVE_INFINITY) return max;
        double sum = 0;
        for (int i = offset; i < offset + length; i++) sum += Math.exp((double) data[i] - max);
        return max + Math.log(sum);
    }

    /** The log-softmax of {@code logits}, as a new array. */
    public static float[] logSoftmax(float[] logits) {
        double lse = logSumExp(logits);
        float[] out = new float[logits.length];
        for (int i = 0; i < logits.length; i++) out[i] = (float) (logits[i] - lse);
        return out;
    }

    /** The report for {@code token} with the {@code topN} (0..vocab) most likely alternatives. */
    public static TokenLogprobs of(float[] logits, int token, int topN) {
        if (token < 0 || token >= logits.length) {
            throw new IllegalArgumentException("token " + token + " is outside the vocabulary [0, " + logits.length + ")");
        }
        if (topN < 0 || topN > logits.length) {
            throw new IllegalArgumentException("topN must be in 0.." + logits.length + ", got " + topN);
        }
        double lse = logSumExp(logits);
        // ids[0..size) sorted by decreasing logit, lower id first on ties: an insertion list, cheap for
        // the small n the API allows since most logits fail the comparison with the current last one.
        int[] ids = new int[topN];
        int size = 0;
        for (int i = 0; i < logits.length && topN > 0; i++) {
            float x = logits[i];
            if (size == topN && !(x > logits[ids[size - 1]])) continue;
            int j = size == topN ? size - 1 : size++;
            while (j > 0 && x > logits[ids[j - 1]]) {
                ids[j] = ids[j - 1];
                j--;
            }
            ids[j] = i;
        }
        float[] top = new float[topN];
        for (int i = 0; i < topN; i++) top[i] = (float) (logits[ids[i]] - lse);
        return new TokenLogprobs(token, (float) (logits[token] - lse), ids, top);
    }
}
