package dev.lathe.core.sampling;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Assume;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.DoubleRange;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import net.jqwik.api.constraints.StringLength;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;

import static org.assertj.core.api.Assertions.assertThat;

class SamplingPropertiesTest {

    private static float[] logits(long seed, int vocab, double scale) {
        var r = new Random(seed);
        float[] out = new float[vocab];
        for (int i = 0; i < vocab; i++) out[i] = (float) (r.nextGaussian() * scale);
        return out;
    }

    @Property(tries = 300)
    void sampledTokensAlwaysHaveNonzeroProbabilityAfterTheFilters(
            @ForAll long seed, @ForAll @IntRange(min = 1, max = 400) int vocab,
            @ForAll @DoubleRange(min = 0.05, max = 4) double temperature, @ForAll @IntRange(min = -1, max = 400) int topK,
            @ForAll @DoubleRange(min = 0.01, max = 1) double topP, @ForAll @DoubleRange(min = 0, max = 1) double minP,
            @ForAll @DoubleRange(min = 0.1, max = 8) double scale) {
        var params = SamplingParams.builder().temperature(temperature).topK(topK).topP(topP).minP(minP)
                .frequencyPenalty(0.4).seed(seed).build();
        float[] l = logits(seed, vocab, scale);
        var s = new Sampler(params, vocab, new int[0], List.of());
        for (int step = 0; step < 5; step++) {
            float[] p = s.probabilities(l);
            int t = s.sample(l);
            assertThat(p[t]).as("probability of sampled token %d", t).isPositive();
            s.accept(t);
        }
    }

    /** The kept set equals the one a full sort in double precision gives, away from exact boundaries. */
    @Property(tries = 200)
    void keptSetMatchesANaiveFullSort(
            @ForAll long seed, @ForAll @IntRange(min = 1, max = 300) int vocab,
            @ForAll @DoubleRange(min = 0.2, max = 3) double temperature, @ForAll @IntRange(min = 0, max = 300) int topK,
            @ForAll @DoubleRange(min = 0.01, max = 1) double topP, @ForAll @DoubleRange(min = 0, max = 0.5) double minP) {
        float[] l = logits(seed, vocab, 2);
        var params = SamplingParams.builder().temperature(temperature).topK(topK).topP(topP).minP(minP).build();
        float[] p = new Sampler(params, vocab, new int[0], List.of()).probabilities(l);

        Integer[] order = IntStream.range(0, vocab).boxed().sorted((a, b) -> Float.compare(l[b], l[a]))
                .toArray(Integer[]::new);
        int k = topK > 0 ? Math.min(topK, vocab) : vocab;
        double max = l[order[0]], z = 0;
        double[] w = new double[vocab];
        for (int r = 0; r < k; r++) z += w[order[r]] = Math.exp((l[order[r]] - max) / temperature);
        boolean[] expected = new boolean[vocab];
        double before = 0;
        for (int r = 0; r < k; r++) {
            double q = w[order[r]] / z;
            Assume.that(Math.abs(before - topP) > 1e-6 && (minP == 0 || Math.abs(w[order[r]] - minP) > 1e-6));
            if (before >= topP) break;
            expected[order[r]] = w[order[r]] >= minP;
            before += q;
        }
        for (int i = 0; i < vocab; i++) {
            assertThat(p[i] > 0).as("token %d kept", i).isEqualTo(expected[i]);
        }
    }

    @Provide
    Arbitrary<String> text() {
        return Arbitraries.strings().withChars("ab#").ofMinLength(0).ofMaxLength(40);
    }

    /**
     * Streaming text in arbitrary deltas shows the same text as the whole text at once: cut before
     * the earliest-ending stop string, and no prefix of the visible text ever includes part of it.
     */
    @Property(tries = 500)
    void stopStringsDoNotDependOnHowTextIsSplit(
            @ForAll("text") String text,
            @ForAll @Size(min = 1, max = 3) List<@StringLength(min = 1, max = 4) @net.jqwik.api.constraints.CharRange(from = 'a', to = 'b') String> stops,
            @ForAll @Size(max = 10) List<@IntRange(min = 0, max = 40) Integer> cuts,
            @ForAll boolean include) {
        int[] bounds = cuts.stream().mapToInt(c -> Math.min(c, text.length())).sorted().distinct().toArray();
        List<String> deltas = new ArrayList<>();
        int prev = 0;
        for (int b : bounds) {
            deltas.add(text.substring(prev, b));
            prev = b;
        }
        deltas.add(text.substring(prev));

        // reference: cut at the first character position where some stop string is complete
        String expected = text;
        outer:
        for (int end = 1; end <= text.length(); end++) {
            for (String s : stops.stream().sorted((a, b) -> b.length() - a.length()).toList()) {
                if (end >= s.length() && text.startsWith(s, end - s.length())) {
                    expected = text.substring(0, include ? end : end - s.length());
                    break outer;
                }
            }
        }

        var m = new StopStringMatcher(stops, include);
        var shown = new StringBuilder();
        for (String d : deltas) {
            shown.append(m.emit(d));
            assertThat(expected).as("text shown so far").startsWith(shown.toString());
        }
        shown.append(m.flush());
        assertThat(shown.toString()).isEqualTo(expected);
        assertThat(m.matched() != null).isEqualTo(stops.stream().anyMatch(text::contains));
    }
}
