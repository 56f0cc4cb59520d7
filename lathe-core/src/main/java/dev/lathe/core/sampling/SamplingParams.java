package dev.lathe.core.sampling;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * How one request is sampled and when it stops. Immutable and validated on construction: a bad value
 * throws {@link IllegalArgumentException} naming the field, the allowed range and the value given.
 *
 * <p>Semantics follow vLLM / the OpenAI API, so a request sent to Lathe means what it means there:
 * <ul>
 *   <li>{@code temperature}: {@code >= 0}; 0 is greedy (argmax, lowest token id on ties).</li>
 *   <li>{@code topP}: {@code (0, 1]}, 1 = off. {@code topK}: 0 or -1 = off, else {@code >= 1}.
 *       {@code minP}: {@code [0, 1]}, 0 = off; drops tokens less likely than {@code minP} times the
 *       most likely one.</li>
 *   <li>{@code repetitionPenalty}: {@code > 0}, 1 = off. Hugging Face semantics: over every token of
 *       the prompt and of the output, a positive logit is divided by it, a negative one multiplied.</li>
 *   <li>{@code presencePenalty}, {@code frequencyPenalty}: {@code [-2, 2]}, 0 = off. OpenAI semantics,
 *       over output tokens only: {@code logit -= presence * (count > 0) + frequency * count}.</li>
 *   <li>{@code seed}: null = a fresh random seed per request.</li>
 *   <li>{@code maxTokens}: {@code >= 1}, or null = until the context is full. {@code minTokens}:
 *       {@code >= 0} and {@code <= maxTokens}; until then EOS and stop token ids cannot be sampled and
 *       stop strings do not stop.</li>
 *   <li>{@code stop}: stop strings (non-empty); the output ends before the first one, or after it with
 *       {@code includeStopStrInOutput}. {@code stopTokenIds}: token ids that end the output (their
 *       text is not shown).</li>
 *   <li>{@code ignoreEos}: keep generating past EOS. {@code skipSpecialTokens}: leave special tokens
 *       out of the text.</li>
 *   <li>{@code logitBias}: token id to a value added to its logit, clamped to {@code [-100, 100]} as
 *       OpenAI does.</li>
 *   <li>{@code n}: sequences per request, {@code >= 1}. {@code logprobs}: null = none, else how many
 *       top alternatives to report per token, {@code 0..20}.</li>
 * </ul>
 */
public record SamplingParams(double temperature, double topP, int topK, double minP,
                             double repetitionPenalty, double presencePenalty, double frequencyPenalty,
                             Long seed, Integer maxTokens, int minTokens,
                             List<String> stop, List<Integer> stopTokenIds, boolean includeStopStrInOutput,
                             boolean ignoreEos, boolean skipSpecialTokens,
                             Map<Integer, Float> logitBias, int n, Integer logprobs) {

    /** OpenAI clamps each logit bias to this magnitude. */
    public static final float MAX_LOGIT_BIAS = 100f;
    /** Most top alternatives a request may ask for per token (OpenAI's limit). */
    public static final int MAX_LOGPROBS = 20;

    public SamplingParams {
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw invalid("temperature", "a finite number >= 0 (0 = greedy)", temperature);
        }
        if (!(topP > 0 && topP <= 1)) throw invalid("topP", "in (0, 1] (1 = off)", topP);
        if (topK < -1) throw invalid("topK", "0 or -1 (off) or >= 1", topK);
        if (!(minP >= 0 && minP <= 1)) throw invalid("minP", "in [0, 1] (0 = off)", minP);
        if (!(repetitionPenalty > 0) || Double.isInfinite(repetitionPenalty)) {
            throw invalid("repetitionPenalty", "a finite number > 0 (1 = off)", repetitionPenalty);
        }
        if (!(presencePenalty >= -2 && presencePenalty <= 2)) {
            throw invalid("presencePenalty", "in [-2, 2] (0 = off)", presencePenalty);
        }
        if (!(frequencyPenalty >= -2 && frequencyPenalty <= 2)) {
            throw invalid("frequencyPenalty", "in [-2, 2] (0 = off)", frequencyPenalty);
        }
        if (maxTokens != null && maxTokens < 1) {
            throw invalid("maxTokens", ">= 1, or null for up to the context length", maxTokens);
        }
        if (minTokens < 0) throw invalid("minTokens", ">= 0", minTokens);
        if (maxTokens != null && minTokens > maxTokens) {
            throw new IllegalArgumentException("minTokens must be <= maxTokens, got minTokens=" + minTokens
                    + " and maxTokens=" + maxTokens + "; lower minTokens or raise maxTokens");
        }
        stop = stop == null ? List.of() : stop;
        for (int i = 0; i < stop.size(); i++) {
            if (stop.get(i) == null || stop.get(i).isEmpty()) {
                throw invalid("stop[" + i + "]", "a string of at least one character", stop.get(i) == null ? null : "\"\"");
            }
        }
        stop = List.copyOf(stop);
        stopTokenIds = stopTokenIds == null ? List.of() : stopTokenIds;
        for (int i = 0; i < stopTokenIds.size(); i++) {
            Integer id = stopTokenIds.get(i);
            if (id == null || id < 0) throw invalid("stopTokenIds[" + i + "]", "a token id >= 0", id);
        }
        stopTokenIds = List.copyOf(stopTokenIds);
        logitBias = clampBias(logitBias);
        if (n < 1) throw invalid("n", ">= 1", n);
        if (logprobs != null && (logprobs < 0 || logprobs > MAX_LOGPROBS)) {
            throw invalid("logprobs", "in 0.." + MAX_LOGPROBS + ", or null for none", logprobs);
        }
    }

    /** Argmax decoding with every other setting at its default. */
    public static SamplingParams greedy() {
        return builder().temperature(0).build();
    }

    /** Defaults: temperature 1, every filter and penalty off, no stops, maxTokens up to the context. */
    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        return new Builder(this);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }

    private static Map<Integer, Float> clampBias(Map<Integer, Float> bias) {
        if (bias == null || bias.isEmpty()) return Map.of();
        var out = new TreeMap<Integer, Float>(); // sorted: the same request applies biases in the same order
        for (var e : bias.entrySet()) {
            Integer id = e.getKey();
            Float v = e.getValue();
            if (id == null || id < 0) throw invalid("logitBias key", "a token id >= 0", id);
            if (v == null || v.isNaN()) throw invalid("logitBias[" + id + "]", "a number (clamped to [-100, 100])", v);
            out.put(id, Math.max(-MAX_LOGIT_BIAS, Math.min(MAX_LOGIT_BIAS, v)));
        }
        return Collections.unmodifiableMap(out);
    }

    private static IllegalArgumentException invalid(String field, String allowed, Object got) {
        return new IllegalArgumentException(field + " must be " + allowed + ", got " + got);
    }

    /** Mutable builder; {@link #build()} validates. */
    public static final class Builder {
        private double temperature = 1, topP = 1, minP = 0;
        private int topK = 0;
        private double repetitionPenalty = 1, presencePenalty = 0, frequencyPenalty = 0;
        private Long seed;
        private Integer maxTokens;
        private int minTokens;
        private List<String> stop = new ArrayList<>();
        private List<Integer> stopTokenIds = new ArrayList<>();
        private boolean includeStopStrInOutput, ignoreEos, skipSpecialTokens = true;
        private Map<Integer, Float> logitBias = new LinkedHashMap<>();
        private int n = 1;
        private Integer logprobs;

        private Builder() {}

        private Builder(SamplingParams p) {
            temperature = p.temperature; topP = p.topP; topK = p.topK; minP = p.minP;
            repetitionPenalty = p.repetitionPenalty; presencePenalty = p.presencePenalty;
            frequencyPenalty = p.frequencyPenalty; seed = p.seed; maxTokens = p.maxTokens;
            minTokens = p.minTokens; stop = new ArrayList<>(p.stop); stopTokenIds = new ArrayList<>(p.stopTokenIds);
            includeStopStrInOutput = p.includeStopStrInOutput; ignoreEos = p.ignoreEos;
            skipSpecialTokens = p.skipSpecialTokens; logitBias = new LinkedHashMap<>(p.logitBias);
            n = p.n; logprobs = p.logprobs;
        }

        public Builder temperature(double v) { temperature = v; return this; }
        public Builder topP(double v) { topP = v; return this; }
        public Builder topK(int v) { topK = v; return this; }
        public Builder minP(double v) { minP = v; return this; }
        public Builder repetitionPenalty(double v) { repetitionPenalty = v; return this; }
        public Builder presencePenalty(double v) { presencePenalty = v; return this; }
        public Builder frequencyPenalty(double v) { frequencyPenalty = v; return this; }
        public Builder seed(Long v) { seed = v; return this; }
        public Builder maxTokens(Integer v) { maxTokens = v; return this; }
        public Builder minTokens(int v) { minTokens = v; return this; }
        public Builder stop(List<String> v) { stop = v == null ? new ArrayList<>() : new ArrayList<>(v); return this; }
        public Builder stop(String... v) { return stop(List.of(v)); }
        public Builder stopTokenIds(List<Integer> v) {
            stopTokenIds = v == null ? new ArrayList<>() : new ArrayList<>(v);
            return this;
        }
        public Builder includeStopStrInOutput(boolean v) { includeStopStrInOutput = v; return this; }
        public Builder ignoreEos(boolean v) { ignoreEos = v; return this; }
        public Builder skipSpecialTokens(boolean v) { skipSpecialTokens = v; return this; }
        public Builder logitBias(Map<Integer, Float> v) {
            logitBias = v == null ? new LinkedHashMap<>() : new LinkedHashMap<>(v);
            return this;
        }
        public Builder logitBias(int tokenId, float bias) { logitBias.put(tokenId, bias); return this; }
        public Builder n(int v) { n = v; return this; }
        public Builder logprobs(Integer v) { logprobs = v; return this; }

        public SamplingParams build() {
            return new SamplingParams(temperature, topP, topK, minP, repetitionPenalty, presencePenalty,
                    frequencyPenalty, seed, maxTokens, minTokens, stop, stopTokenIds, includeStopStrInOutput,
                    ignoreEos, skipSpecialTokens, logitBias, n, logprobs);
        }
    }
}
