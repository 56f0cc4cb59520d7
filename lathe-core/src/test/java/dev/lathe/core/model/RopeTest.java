package dev.lathe.core.model;

import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.RopeScaling;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Rope's tables: the memoised base table gives the very values of the per-call formula. */
class RopeTest {
    private static ModelConfig config(RopeScaling scaling, int maxPositions) {
        return new ModelConfig("LlamaForCausalLM", "llama", 1000, 512, 1024, 2, 4, 1, 128, maxPositions, 1e-5, 500000,
                scaling, false, false, false, false, 0, 1, List.of(2), "bfloat16");
    }

    /** cos and sin as transformers forms them in float32: angle = (float) position * invFreq, rounded to float. */
    private static void expectFormula(int[] positions, float[] invFreq, float[] cos, float[] sin, int rowOffset) {
        int half = invFreq.length;
        for (int t = 0; t < positions.length; t++) {
            for (int j = 0; j < half; j++) {
                float angle = (float) positions[t] * invFreq[j];
                int at = (rowOffset + t) * half + j;
                assertThat(Float.floatToRawIntBits(cos[at])).as("cos position %d freq %d", positions[t], j)
                        .isEqualTo(Float.floatToRawIntBits((float) Math.cos(angle)));
                assertThat(Float.floatToRawIntBits(sin[at])).as("sin position %d freq %d", positions[t], j)
                        .isEqualTo(Float.floatToRawIntBits((float) Math.sin(angle)));
            }
        }
    }

    @Test
    void baseTableGivesTheFormulasBitsAcrossGrowth() {
        for (RopeScaling scaling : List.of(RopeScaling.NONE, new RopeScaling(RopeScaling.Type.LLAMA3, 8, 1, 4, 8192),
                new RopeScaling(RopeScaling.Type.LINEAR, 2, 0, 0, 0))) {
            Rope rope = new Rope(config(scaling, 131072));
            int half = rope.half();
            // out of order, past the first table size, then far past it, then small again: every growth path
            // with runs of consecutive positions among them (a prompt chunk: one copy from the table): one that makes
            // the table grow, one inside it, and two that only look like one at their ends
            int[] across = java.util.stream.IntStream.range(1000, 1100).toArray();
            int[] run = java.util.stream.IntStream.range(100, 164).toArray();
            int[][] calls = {{0, 5, 1023}, across, {1024, 3, 2047, 2048}, {70000, 1, 131071}, {7}, run, {5, 7, 6}, {5, 6, 8, 8}};
            for (int[] positions : calls) {
                float[] cos = new float[(positions.length + 2) * half], sin = new float[(positions.length + 2) * half];
                rope.fill(positions, 0, positions.length, rope.invFreq(positions.length), cos, sin, 2);
                expectFormula(positions, rope.invFreq(1), cos, sin, 2);
                for (int i = 0; i < 2 * half; i++) {
                    assertThat(cos[i]).as("cos rows before the offset untouched").isZero();
                    assertThat(sin[i]).as("sin rows before the offset untouched").isZero();
                }
            }
        }
    }

    @Test
    void dynamicScalingPastTheTrainedLengthUsesItsOwnFrequencies() {
        Rope rope = new Rope(config(new RopeScaling(RopeScaling.Type.DYNAMIC, 2, 0, 0, 0), 4096));
        assertThat(rope.dependsOnLength()).isTrue();
        float[] longer = rope.invFreq(10000);
        assertThat(longer).isNotEqualTo(rope.invFreq(100));
        int[] positions = {9999, 12, 5000};
        float[] cos = new float[3 * rope.half()], sin = new float[3 * rope.half()];
        rope.fill(positions, 0, 3, longer, cos, sin, 0);
        expectFormula(positions, longer, cos, sin, 0);
    }

    @Test
    void aNegativePositionIsRefusedOnEitherPath() {
        Rope rope = new Rope(config(RopeScaling.NONE, 4096));
        float[] cos = new float[2 * rope.half()], sin = new float[2 * rope.half()];
        assertThatThrownBy(() -> rope.fill(new int[]{3, -1}, 0, 2, rope.invFreq(1), cos, sin, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("negative position -1");
        Rope dynamic = new Rope(config(new RopeScaling(RopeScaling.Type.DYNAMIC, 2, 0, 0, 0), 16));
        assertThatThrownBy(() -> dynamic.fill(new int[]{-7}, 0, 1, dynamic.invFreq(100), cos, sin, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("negative position -7");
    }
}
