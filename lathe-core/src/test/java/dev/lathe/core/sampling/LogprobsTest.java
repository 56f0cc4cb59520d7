package dev.lathe.core.sampling;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class LogprobsTest {

    @Test
    void logSoftmaxMatchesTheDefinitionAndSurvivesLargeLogits() {
        float[] logits = {1000f, 999f, 998f, Float.NEGATIVE_INFINITY};
        float[] lp = Logprobs.logSoftmax(logits);
        double z = 1 + Math.exp(-1) + Math.exp(-2);
        assertThat(lp[0]).isCloseTo((float) -Math.log(z), within(1e-6f));
        assertThat(lp[1]).isCloseTo((float) (-1 - Math.log(z)), within(1e-6f));
        assertThat(lp[2]).isCloseTo((float) (-2 - Math.log(z)), within(1e-6f));
        assertThat(lp[3]).isEqualTo(Float.NEGATIVE_INFINITY);
    }

    @Test
    void topAlternativesAreSortedByLogprobThenId() {
        float[] logits = {0.5f, 3f, -1f, 3f, 2f, 0.5f};
        var r = Logprobs.of(logits, 2, 4);
        assertThat(r.topIds()).containsExactly(1, 3, 4, 0);
        float[] lp = Logprobs.logSoftmax(logits);
        assertThat(r.topLogprobs()).containsExactly(lp[1], lp[3], lp[4], lp[0]);
        assertThat(r.token()).isEqualTo(2);
        assertThat(r.logprob()).isEqualTo(lp[2]);
    }

    @Test
    void zeroAlternativesStillReportsTheChosenToken() {
        var r = Logprobs.of(new float[]{1f, 2f}, 0, 0);
        assertThat(r.topIds()).isEmpty();
        assertThat(r.logprob()).isCloseTo((float) -Math.log(1 + Math.E), within(1e-6f));
    }

    @Test
    void outOfRangeTokenIsRejected() {
        assertThatThrownBy(() -> Logprobs.of(new float[3], 3, 1)).hasMessageContaining("token 3")
                .hasMessageContaining("[0, 3)");
    }
}
