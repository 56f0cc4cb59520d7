package dev.lathe.core.sampling;

/**
 * {@code exp(x)} for {@code x <= 0} in float arithmetic only, for turning logits into weights.
 *
 * <p>Two reasons not to use {@link Math#exp}: it may differ by an ulp between JVMs and CPUs (only
 * {@link StrictMath} is specified bit for bit), which would let a seeded request sample differently on
 * another machine; and written as plain float operations the array form runs on SIMD lanes (the JIT
 * vectorises each of its two loops; in one loop the float-to-int step stops it), about 2.5 times
 * faster than {@code Math.exp} over a 152k vocabulary. Java float arithmetic is IEEE 754 with no
 * contraction, so the result is the same on every machine, and the scalar and array forms agree
 * bit for bit.
 *
 * <p>Method: {@code x = n ln2 + r} with {@code n} rounded to nearest by adding and subtracting
 * 1.5 * 2^23, and ln2 split into a short high part (so {@code n * LN2_HI} is exact) and a correction
 * (Cody-Waite); a degree-6 polynomial for {@code e^r}, {@code |r| <= ln2 / 2} (coefficients fitted on
 * Chebyshev nodes); {@code 2^n} built in the float's exponent bits. Relative error below 2e-7 down to
 * x = -87; below about -87.7 the result is 0 (no subnormals). Branch-free: the argument is clamped so
 * the polynomial stays finite and the exponent clamps to -127, whose scale factor is +0.0f.
 */
final class FastExp {
    private FastExp() {}

    private static final float LOG2E = 1.44269504f;
    private static final float LN2_HI = 0.693359375f;     // 355/512: 9 significant bits
    private static final float LN2_LO = -2.12194440e-4f;  // ln 2 - LN2_HI
    private static final float ROUND = 12582912f;         // 1.5 * 2^23
    private static final float CLAMP_ARG = -100f;

    static float expNonPositive(float x) {
        float xc = Math.max(x, CLAMP_ARG);
        float n = Math.max((xc * LOG2E + ROUND) - ROUND, -127f);
        return poly(xc - n * LN2_HI - n * LN2_LO) * Float.intBitsToFloat(((int) n + 127) << 23);
    }

    /**
     * {@code w[i] = exp((v[i] - max) * invT)} for {@code i < v.length}, {@code v[i] <= max}; {@code v}
     * and {@code w} may be the same array. {@code exponents} is scratch of at least {@code v.length}.
     */
    static void expShifted(float[] v, float max, float invT, float[] w, int[] exponents) {
        int len = v.length;
        for (int i = 0; i < len; i++) {
            float xc = Math.max((v[i] - max) * invT, CLAMP_ARG);
            float n = Math.max((xc * LOG2E + ROUND) - ROUND, -127f);
            w[i] = poly(xc - n * LN2_HI - n * LN2_LO);
            exponents[i] = (int) n;
        }
        for (int i = 0; i < len; i++) w[i] *= Float.intBitsToFloat((exponents[i] + 127) << 23);
    }

    private static float poly(float r) {
        float p = 1.382942079e-03f;
        p = p * r + 8.374771103e-03f;
        p = p * r + 4.166835919e-02f;
        p = p * r + 1.666642129e-01f;
        p = p * r + 4.999999106e-01f;
        p = p * r + 1.0f;
        return p * r + 1.0f;
    }
}
