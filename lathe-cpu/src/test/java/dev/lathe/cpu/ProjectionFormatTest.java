package dev.lathe.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.model.LlamaModel;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link Backend#projectionFormat}: where a backend offers a 16-bit qkv product, {@link LlamaModel} allocates the qkv
 * tensor in that format and hands it to linear and ropeWriteKv, and only there; with a qkv bias or q/k norms it
 * stays float32. The CPU backend has no 16-bit tensors, so the backend here answers BF16 and stands a float32 tensor
 * in for the 16-bit one, which leaves every number as it was.
 */
class ProjectionFormatTest {
    @ParameterizedTest(name = "attention bias {0}, q/k norms {1}")
    @CsvSource({"false, false, 2", "true, false, 0", "false, true, 0"})
    void llamaWritesTheQkvProductInTheProjectionFormatOnlyWithoutBiasOrNorms(boolean bias, boolean qkNorm, int expected) {
        ModelConfig config = Fixtures.tinyLlama(bias, false, qkNorm);
        int[] prompt = new Random(5).ints(19, 0, 97).toArray();
        int[] calls = new int[2];  // linear into a 16-bit tensor, ropeAttention (ropeWriteKv, attention) from one
        float[] plain, offered;
        int allocations;
        try (CpuBackend cpu = new CpuBackend(2)) {
            plain = Fixtures.promptLogits(cpu, config, prompt);
            var offering = new SixteenBitStandIn(cpu) {
                @Override public DType projectionFormat(Weight w, int rows) { return DType.BF16; }
                @Override public void linear(Tensor x, Weight w, Weight b, Tensor out) {
                    if (sixteen.contains(out)) {
                        calls[0]++;
                        assertThat(b).as("no bias into the projection format").isNull();
                    }
                    super.linear(x, w, b, out);
                }
                @Override public void ropeAttention(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer,
                                                    AttentionMetadata meta, float scale, Tensor out) {
                    if (sixteen.contains(qkv)) calls[1]++;
                    super.ropeAttention(qkv, q, cos, sin, cache, layer, meta, scale, out);
                }
            };
            offered = Fixtures.promptLogits(offering, config, prompt);
            allocations = offering.allocations;
        }
        assertThat(new int[] {allocations, calls[0], calls[1]}).as("16-bit allocations, linear into them, ropeAttention from them")
                .containsExactly(Math.min(expected, 1), expected, expected);
        assertThat(Arrays.mismatch(offered, plain)).as("first logit that differs").isEqualTo(-1);
    }
}
