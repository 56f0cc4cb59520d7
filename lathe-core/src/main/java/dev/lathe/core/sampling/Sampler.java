package dev.lathe.core.sampling;

import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.backend.SeededRandom;

import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Collection;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Picks the next token of one request from its logits. One instance per sequence: it holds the
 * sequence's history for penalties ({@link #accept}) and its random stream. Not thread-safe; a sampler
 * is used by one thread at a time (the engine thread), which may change between calls.
 *
 * <p>Order of operations, vLLM's: logit bias; min_tokens (EOS and stop token ids set to -inf while
 * fewer than {@code minTokens} tokens were generated); repetition, then frequency and presence
 * penalties; then either argmax (temperature 0, lowest id on ties) or: divide by the temperature,
 * top-k, top-p, min-p, and draw from what is left.
 *
 * <p>Every filter keeps the tokens whose probability is at least some floor, so ties at a boundary
 * are all kept or all dropped (as in Hugging Face's and vLLM's top-k): top-k keeps logits {@code >=}
 * the k-th largest; top-p keeps the most likely tokens until the mass before the next one reaches
 * {@code topP} (at least one token, plus any token tied with the last kept); min-p keeps tokens with
 * probability {@code >= minP} times the largest. The draw walks the kept tokens in ascending id order,
 * so the result depends only on the kept weights, not on how they were found.
 *
 * <p>Determinism: weights come from float arithmetic only ({@link FastExp}, not {@link Math#exp}),
 * which Java specifies bit for bit; the uniform number for the {@code i}-th output token (0-based) is
 * {@link SeededRandom#bits SeededRandom.bits(seed, i)} scaled to [0, 1). It depends only on the seed
 * and the position, so a seeded request gives the same tokens on every run, JVM and machine, calling
 * {@link #sample} twice before {@link #accept} gives the same token, and a GPU kernel can reproduce the
 * stream. Without a seed, one is drawn from {@link SecureRandom} mixed with the clock; {@link #seed()}
 * reports it so a run can be replayed.
 *
 * <p>Cost per token, vocabulary V: a few linear passes over V (no boxing, no allocation after the
 * first call on a thread); exponentials only for tokens that pass top-k, in {@link FastExp}; top-k
 * adds O(V log k) in the worst case, typically O(V); top-p finds its floor by a quickselect on mass,
 * expected O(V), usually over the few tokens within a factor 2^12 of the most likely one. Penalties
 * visit only the distinct tokens of the prompt and output.
 */
public final class Sampler {
    private static final long SEED_BASE = new SecureRandom().nextLong();
    private static final AtomicLong UNSEEDED = new AtomicLong();
    // Top-p looks at the tokens with weight >= each floor in turn (weights are relative to the most
    // likely token, which has weight 1) until the tokens above a floor hold at least topP of the mass.
    private static final float[] NUCLEUS_FLOORS = {0x1p-12f, 0x1p-40f, 0f};
    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    private final SamplingParams params;
    private final int vocabSize;
    private final long seed;
    private final int[] promptTokens;       // distinct prompt ids, ascending; empty unless repetition penalty is on
    private final int[] maskedBeforeMin;    // EOS ids (unless ignoreEos) and stop token ids, distinct
    private final int[] biasIds;            // logit bias as parallel arrays, ascending id
    private final float[] biasValues;
    private final TokenCounts generated = new TokenCounts();
    private final boolean hasPenalty;  // repetition, frequency or presence: reads the generated tokens' counts
    private int numGenerated;

    /**
     * @param vocabSize   length of every logits row passed in
     * @param promptIds   the prompt, for the repetition penalty
     * @param eosTokenIds the model's end-of-sequence ids, masked until {@code minTokens} are generated
     * @throws IllegalArgumentException if any token id given (prompt, EOS, stop token ids, logit bias
     *                                  keys) is outside {@code [0, vocabSize)}
     */
    public Sampler(SamplingParams params, int vocabSize, int[] promptIds, Collection<Integer> eosTokenIds) {
        if (vocabSize < 1) throw new IllegalArgumentException("vocabSize must be >= 1, got " + vocabSize);
        this.params = params;
        this.vocabSize = vocabSize;
        this.hasPenalty = params.repetitionPenalty() != 1 || params.frequencyPenalty() != 0 || params.presencePenalty() != 0;
        this.seed = params.seed() != null ? params.seed()
                : SEED_BASE ^ SeededRandom.bits(System.nanoTime(), UNSEEDED.incrementAndGet());
        for (int i = 0; i < promptIds.length; i++) checkId("promptIds[" + i + "]", promptIds[i]);
        this.promptTokens = params.repetitionPenalty() != 1
                ? Arrays.stream(promptIds).sorted().distinct().toArray() : new int[0];
        var masked = new TreeSet<Integer>();
        if (!params.ignoreEos()) {
            for (int id : eosTokenIds) masked.add(checkId("eos token id", id));
        }
        for (int i = 0; i < params.stopTokenIds().size(); i++) {
            masked.add(checkId("stopTokenIds[" + i + "]", params.stopTokenIds().get(i)));
        }
        this.maskedBeforeMin = masked.stream().mapToInt(Integer::intValue).toArray();
        this.biasIds = new int[params.logitBias().size()];
        this.biasValues = new float[biasIds.length];
        int j = 0;
        for (var e : params.logitBias().entrySet()) {
            biasIds[j] = checkId("logitBias key", e.getKey());
            biasValues[j++] = e.getValue();
        }
    }

    public SamplingParams params() { return params; }

    /** The seed of this sequence's random stream: the request's, or the one drawn for it. */
    public long seed() { return seed; }

    /** Output tokens accepted so far. */
    public int numGenerated() { return numGenerated; }

    /**
     * True when this step's token is the plain argmax of the raw logits: greedy, with no logit bias, no
     * penalty and no min_tokens mask in force. The caller may then take the argmax where the logits are
     * (see {@code Backend.argmaxRows}) instead of calling {@link #sample}; the token is the same, and a
     * NaN in the row is an error either way.
     */
    public boolean isPlainArgmax() {
        return params.isGreedy() && biasIds.length == 0
                && (numGenerated >= params.minTokens() || maskedBeforeMin.length == 0) && !hasPenalty;
    }

    /**
     * This step's draw as a {@link SampleSpec}, for a backend that samples where the logits are, or null when
     * the step needs more than the raw logits give: greedy (take the argmax), logit bias, a penalty, or the
     * min_tokens mask in force. {@link #sample(float[], SampleSpec)} with the spec gives what {@link #sample}
     * gives.
     */
    public SampleSpec deviceSpec() {
        if (params.isGreedy() || biasIds.length != 0 || (numGenerated < params.minTokens() && maskedBeforeMin.length != 0)
                || hasPenalty) {
            return null;
        }
        return new SampleSpec((float) (1.0 / params.temperature()), Math.max(0, params.topK()), params.topP(),
                (float) params.minP(), seed, numGenerated);
    }

    /**
     * The draw of one row described by {@code spec} (temperature, top-k, top-p, min-p, then the uniform number
     * {@code spec.counter()} of stream {@code spec.seed()}), on raw logits; {@code logits} is left unchanged.
     * The reference for backends that sample where the logits are.
     */
    public static int sample(float[] logits, SampleSpec spec) {
        float[] v = SCRATCH.get().work(logits.length);
        System.arraycopy(logits, 0, v, 0, logits.length);
        double total = keptWeights(v, spec.topK(), spec.invTemperature(), spec.topP(), spec.minP());
        double u = (SeededRandom.bits(spec.seed(), spec.counter()) >>> 11) * 0x1.0p-53; // [0, 1)
        return draw(v, total, u);
    }

    /**
     * The error a backend's code for a row ({@code Backend.sampleRows}: -1 NaN, -2 all -infinity, -3
     * +infinity) stands for, as {@link #sample} reports it; other values are returned as they are.
     */
    public static int checkDeviceToken(int token) {
        return switch (token) {
            case -1 -> throw new IllegalStateException("a logit is NaN; the model's output is invalid");
            case -2 -> throw allNegativeInfinity();
            case -3 -> throw positiveInfinity();
            default -> {
                if (token < 0) throw new IllegalStateException("the backend sampled no token for this row (code " + token + ")");
                yield token;
            }
        };
    }

    /** Records the token chosen for this step, so that penalties and min_tokens see it. */
    public void accept(int token) {
        checkId("accepted token", token);
        if (hasPenalty) generated.add(token);  // only the penalties read the counts
        numGenerated++;
    }

    /** Samples the next token; {@code logits} ({@code [vocabSize]}) is left unchanged. */
    public int sample(float[] logits) {
        checkLength(logits);
        float[] v = SCRATCH.get().work(vocabSize);
        System.arraycopy(logits, 0, v, 0, vocabSize);
        return sampleInPlace(v);
    }

    /**
     * As {@link #sample}, without the copy: {@code logits} is overwritten with scratch values (for
     * callers that own the row and do not need it afterwards).
     */
    public int sampleInPlace(float[] logits) {
        checkLength(logits);
        processLogits(logits);
        if (params.isGreedy()) return argmax(logits);
        double total = toKeptWeights(logits);
        double u = (SeededRandom.bits(seed, numGenerated) >>> 11) * 0x1.0p-53; // [0, 1)
        return draw(logits, total, u);
    }

    /**
     * The distribution {@link #sample} draws from at this step: {@code [vocabSize]} probabilities that
     * sum to 1, zero for every filtered token (one-hot at the argmax when greedy). A new array; the
     * input is left unchanged.
     */
    public float[] probabilities(float[] logits) {
        checkLength(logits);
        float[] v = logits.clone();
        processLogits(v);
        if (params.isGreedy()) {
            int best = argmax(v);
            Arrays.fill(v, 0f);
            v[best] = 1f;
            return v;
        }
        double total = toKeptWeights(v);
        for (int i = 0; i < v.length; i++) v[i] = (float) (v[i] / total);
        return v;
    }

    /**
     * Applies, in place, what comes before temperature: logit bias, the min_tokens mask, repetition
     * penalty, then frequency and presence penalties. (The logits a processed-logprobs report uses.)
     */
    public void processLogits(float[] logits) {
        checkLength(logits);
        for (int j = 0; j < biasIds.length; j++) logits[biasIds[j]] += biasValues[j];
        if (numGenerated < params.minTokens()) {
            for (int id : maskedBeforeMin) logits[id] = Float.NEGATIVE_INFINITY;
        }
        if (params.repetitionPenalty() != 1) {
            float p = (float) params.repetitionPenalty();
            for (int t : promptTokens) logits[t] = repetitionPenalty(logits[t], p);
            for (int i = 0; i < generated.size(); i++) {
                int t = generated.token(i);
                if (Arrays.binarySearch(promptTokens, t) < 0) logits[t] = repetitionPenalty(logits[t], p);
            }
        }
        double freq = params.frequencyPenalty(), presence = params.presencePenalty();
        if (freq != 0 || presence != 0) {
            for (int i = 0; i < generated.size(); i++) {
                int t = generated.token(i);
                logits[t] = (float) (logits[t] - freq * generated.count(t) - presence);
            }
        }
    }

    private static float repetitionPenalty(float logit, float penalty) {
        return logit > 0 ? logit / penalty : logit * penalty;
    }

    /** Index of the largest logit, the lowest such index on ties. */
    static int argmax(float[] v) {
        int best = 0;
        float max = v[0];
        for (int i = 0; i < v.length; i++) {
            float x = v[i];
            if (x != x) throw nan(i);
            if (x > max) {
                max = x;
                best = i;
            }
        }
        return best;
    }

    /**
     * Turns processed logits into unnormalised probabilities of the tokens that survive temperature,
     * top-k, top-p and min-p, in place ({@code w[i] = exp((logit[i] - max) / T)}, so the most likely
     * token has weight exactly 1; 0 for dropped tokens). Returns the sum of the weights.
     */
    private double toKeptWeights(float[] v) {
        return keptWeights(v, params.topK(), (float) (1.0 / params.temperature()), params.topP(), (float) params.minP());
    }

    private static IllegalStateException allNegativeInfinity() {
        return new IllegalStateException("every logit is -infinity after logit bias, min_tokens and penalties;"
                + " no token can be sampled (check logitBias, minTokens and the model's output)");
    }

    private static IllegalStateException positiveInfinity() {
        return new IllegalStateException("logits contain +infinity; the model's output overflowed");
    }

    /** {@link #toKeptWeights} with the parameters given. */
    private static double keptWeights(float[] v, int k, float invT, double topP, float minP) {
        int vocabSize = v.length;
        float max = v[argmax(v)];
        if (max == Float.NEGATIVE_INFINITY) throw allNegativeInfinity();
        if (max == Float.POSITIVE_INFINITY) throw positiveInfinity();
        if (Float.isInfinite(invT)) { // a temperature so small that only the maximum survives
            for (int i = 0; i < v.length; i++) v[i] = v[i] == max ? 1f : 0f;
        } else if (k > 0 && k < vocabSize) {
            float kth = kthLargest(v, k); // few tokens pass: exp only for them
            for (int i = 0; i < v.length; i++) {
                float x = v[i];
                v[i] = x >= kth ? FastExp.expNonPositive((x - max) * invT) : 0f;
            }
        } else {
            FastExp.expShifted(v, max, invT, v, SCRATCH.get().exponents(v.length));
        }
        double total = sum(v, 0, v.length);
        // Each filter is a floor on the weight; the most likely token (weight 1) always passes. minP: p / pMax == w / 1
        float floor = topP < 1 ? Math.max(minP, nucleusFloor(v, total, topP, minP)) : minP;
        if (floor > 0) {
            for (int i = 0; i < v.length; i++) {
                if (v[i] < floor) v[i] = 0f;
            }
            total = sum(v, 0, v.length);
        }
        return total;
    }

    /** Sum in double, four accumulators so the adds do not wait on each other; a fixed order. */
    private static double sum(float[] v, int from, int to) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = from;
        for (; i + 3 < to; i += 4) {
            s0 += v[i];
            s1 += v[i + 1];
            s2 += v[i + 2];
            s3 += v[i + 3];
        }
        for (; i < to; i++) s0 += v[i];
        return (s0 + s1) + (s2 + s3);
    }

    /** The k-th largest value of {@code v} ({@code 1 <= k < v.length}), by a size-k min-heap. */
    private static float kthLargest(float[] v, int k) {
        float[] heap = SCRATCH.get().heap(k);
        System.arraycopy(v, 0, heap, 0, k);
        for (int i = k / 2 - 1; i >= 0; i--) siftDown(heap, k, i);
        for (int i = k; i < v.length; i++) {
            if (v[i] > heap[0]) {
                heap[0] = v[i];
                siftDown(heap, k, 0);
            }
        }
        return heap[0];
    }

    private static void siftDown(float[] h, int n, int i) {
        float x = h[i];
        while (true) {
            int c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && h[c + 1] < h[c]) c++;
            if (h[c] >= x) break;
            h[i] = h[c];
            i = c;
        }
        h[i] = x;
    }

    /**
     * Smallest weight the nucleus keeps: walking weights from the largest down, a token is kept while
     * the mass before it is below {@code topP * total}. The nucleus is a top set, so once the tokens
     * above some floor hold at least that mass, only they need looking at; and if the tokens at or
     * above {@code minP} hold less, the nucleus contains them all and min-p alone decides.
     */
    private static float nucleusFloor(float[] w, double total, double topP, float minP) {
        double target = topP * total;
        float[] buf = SCRATCH.get().sort(w.length);
        for (float cut : NUCLEUS_FLOORS) {
            float c = Math.max(cut, minP);
            int n = 0;
            for (float x : w) {
                if (x > 0 && x >= c) buf[n++] = x;
            }
            if (sum(buf, 0, n) >= target) return weightedSelect(buf, n, target);
            if (minP > 0 && c == minP) return minP;
        }
        return 0f; // rounding left the whole vocabulary short of the target: keep everything
    }

    /**
     * The floor of the nucleus among {@code buf[0..n)} (which holds at least {@code target}), by
     * quickselect on mass: partition around a pivot into larger, equal and smaller weights and recurse
     * into the part where the running mass crosses the target. Expected O(n), no full sort.
     */
    private static float weightedSelect(float[] buf, int n, double target) {
        int lo = 0, hi = n;
        double before = 0; // mass of the weights above buf[lo..hi), all kept; always < target
        float floor = 0f;
        while (lo < hi) {
            float pivot = buf[lo + (hi - lo) / 2];
            // [lo, gt) > pivot, [gt, i) == pivot, [lt, hi) < pivot
            int gt = lo, i = lo, lt = hi;
            while (i < lt) {
                float x = buf[i];
                if (x > pivot) {
                    buf[i++] = buf[gt];
                    buf[gt++] = x;
                } else if (x < pivot) {
                    buf[i] = buf[--lt];
                    buf[lt] = x;
                } else {
                    i++;
                }
            }
            double above = sum(buf, lo, gt), equal = sum(buf, gt, lt);
            if (before + above >= target) {
                hi = gt;
            } else if (before + above + equal >= target) {
                return pivot; // the first of the equal weights is kept, the first smaller one is not
            } else {
                before += above + equal;
                floor = pivot;
                lo = lt;
            }
        }
        return floor; // rounding: every weight was needed
    }

    /** Inverse CDF over the kept weights in ascending id order; {@code u} in [0, 1). */
    private static int draw(float[] w, double total, double u) {
        double target = u * total, cum = 0;
        int last = -1;
        for (int i = 0; i < w.length; i++) {
            float x = w[i];
            if (x > 0) {
                cum += x;
                last = i;
                if (target < cum) return i;
            }
        }
        return last; // rounding: the sum in this order fell just short of total
    }

    private void checkLength(float[] logits) {
        if (logits.length != vocabSize) {
            throw new IllegalArgumentException("logits has " + logits.length + " entries, the sampler expects the"
                    + " vocabulary size " + vocabSize);
        }
    }

    private int checkId(String what, Integer id) {
        if (id == null || id < 0 || id >= vocabSize) {
            throw new IllegalArgumentException(what + " = " + id + " is outside the vocabulary [0, " + vocabSize + ")");
        }
        return id;
    }

    private static IllegalStateException nan(int i) {
        return new IllegalStateException("logits[" + i + "] is NaN; the model's output is invalid");
    }

    /** Per-thread buffers, grown on demand, so steady-state sampling allocates nothing. */
    private static final class Scratch {
        private float[] work = new float[0], sort = new float[0], heap = new float[0];
        private int[] exponents = new int[0];

        float[] work(int n) { return work.length == n ? work : (work = new float[n]); } // exact: loops use its length
        float[] sort(int n) { return sort.length >= n ? sort : (sort = new float[n]); }
        float[] heap(int n) { return heap.length >= n ? heap : (heap = new float[n]); }
        int[] exponents(int n) { return exponents.length >= n ? exponents : (exponents = new int[n]); }
    }
}
