package dev.lathe.core.sampling;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class FastExpTest {

    @Test
    void relativeErrorStaysBelowTwoTenMillionthsOverTheWholeRange() {
        double worst = 0;
        for (int i = 0; i <= 2_000_000; i++) {
            float x = -87f * i / 2_000_000f;
            double exact = Math.exp(x);
            worst = Math.max(worst, Math.abs(FastExp.expNonPositive(x) / exact - 1));
        }
        assertThat(worst).isLessThan(2e-7);
    }

    @Test
    void zeroGivesExactlyOneAndTheFarTailGivesZero() {
        assertThat(FastExp.expNonPositive(0f)).isEqualTo(1f);
        assertThat(FastExp.expNonPositive(-0f)).isEqualTo(1f);
        assertThat(FastExp.expNonPositive(-88f)).isZero();
        assertThat(FastExp.expNonPositive(Float.NEGATIVE_INFINITY)).isZero();
    }

    @Test
    void arrayFormAgreesBitForBitWithTheScalarForm() {
        var r = new java.util.Random(12);
        float[] v = new float[10_001];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * 30);
        v[17] = Float.NEGATIVE_INFINITY;
        float max = Float.NEGATIVE_INFINITY;
        for (float x : v) max = Math.max(max, x);
        float[] w = new float[v.length];
        FastExp.expShifted(v, max, 0.7f, w, new int[v.length]);
        for (int i = 0; i < v.length; i++) {
            assertThat(w[i]).as("index %d", i).isEqualTo(FastExp.expNonPositive((v[i] - max) * 0.7f));
        }
        assertThat(w[17]).isZero();
    }

    @Test
    void isMonotoneAcrossExponentSteps() {
        float prev = FastExp.expNonPositive(-87f);
        for (float x = -87f; x <= 0f; x = Math.nextUp(x) + 1e-4f) {
            float y = FastExp.expNonPositive(x);
            assertThat(y).as("exp(%s)", x).isGreaterThanOrEqualTo(prev);
            prev = y;
        }
    }
}
