package dev.lathe.core.backend;

/**
 * Counter-based random numbers: value {@code i} of stream {@code seed} depends on nothing else, so
 * any backend (and any thread, in any order) produces the same synthetic weights. A CUDA kernel
 * ports these few lines exactly.
 */
public final class SeededRandom {
    private SeededRandom() {}

    /** SplitMix64 finaliser of {@code seed} and {@code index}. */
    public static long bits(long seed, long index) {
        long z = seed * 0x9E3779B97F4A7C15L + index * 0xD1B54A32D192ED03L + 0x632BE59BD9B4E019L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** Uniform in (0, 1], from the top 24 bits. */
    public static float uniform(long seed, long index) {
        return ((bits(seed, index) >>> 40) + 1) * 0x1.0p-24f;
    }

    /** Standard normal by Box-Muller over two uniforms of the same counter. */
    public static float normal(long seed, long index) {
        long b = bits(seed, index);
        float u1 = (((b >>> 40) & 0xFFFFFF) + 1) * 0x1.0p-24f;
        float u2 = ((b >>> 16) & 0xFFFFFF) * 0x1.0p-24f;
        return (float) (Math.sqrt(-2.0 * Math.log(u1)) * Math.cos(2.0 * Math.PI * u2));
    }
}
