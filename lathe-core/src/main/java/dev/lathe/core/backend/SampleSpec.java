package dev.lathe.core.backend;

/**
 * What a backend needs to draw one row's token where the logits are ({@link Backend#sampleRows}): the
 * temperature as {@code invTemperature = (float) (1.0 / temperature)}, top-k (0 = off), top-p (1 = off),
 * min-p (0 = off), and the random stream's seed and position ({@link SeededRandom#bits SeededRandom.bits(seed,
 * counter)}). The semantics are those of {@code Sampler}'s draw for a row with no bias, penalty or mask.
 */
public record SampleSpec(float invTemperature, int topK, double topP, float minP, long seed, long counter) {
    public SampleSpec {
        if (!(invTemperature > 0)) throw new IllegalArgumentException("invTemperature must be > 0, got " + invTemperature);
        if (topK < 0) throw new IllegalArgumentException("topK must be >= 0, got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("topP must be in (0, 1], got " + topP);
        if (!(minP >= 0 && minP <= 1)) throw new IllegalArgumentException("minP must be in [0, 1], got " + minP);
    }
}
