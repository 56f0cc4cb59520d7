package dev.lathe.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.ForwardingBackend;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.model.LlamaModel;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** {@link LlamaModel#RESIDUAL_ADD_PROPERTY}: the residual adds moved into the products change no number. */
class ResidualAddTest {
    private static final ModelConfig CONFIG = Fixtures.tinyLlama(true, true, false);  // o and MLP biases too

    /**
     * With {@link LlamaModel#RESIDUAL_ADD_PROPERTY} the o projection and the MLP add into the residual themselves and
     * the norms only normalize: the same float32 adds in the same order, so the logits are the same bits. The model
     * with the switch runs over a backend that counts those calls, with the same synthetic weights.
     */
    @Test
    void addingIntoTheResidualInsideTheProductsGivesTheSameLogits() {
        int[] prompt = new Random(9).ints(23, 0, 97).toArray();
        int[] adds = new int[2];
        float[] plain, fused;
        try (CpuBackend backend = new CpuBackend(2)) {
            plain = withResidualAdd("false", () -> logits(backend, prompt));
            Backend counting = new ForwardingBackend(backend) {
                @Override public boolean addsIntoResidual(Weight w, int rows) { return true; }  // the CPU says no itself
                @Override public void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) {
                    adds[0]++;
                    super.linearAdd(x, w, bias, acc);
                }
                @Override public void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
                    adds[1]++;
                    super.mlpAdd(h, gateUp, gateUpBias, down, downBias, acc);
                }
            };
            fused = withResidualAdd("true", () -> logits(counting, prompt));
        }
        assertThat(adds).as("linearAdd and mlpAdd calls, one each a layer").containsExactly(2, 2);
        assertThat(Arrays.mismatch(fused, plain)).as("first logit that differs").isEqualTo(-1);
    }

    /** {@code run}'s result with {@link LlamaModel#RESIDUAL_ADD_PROPERTY} set to {@code value} while the model is built. */
    private static float[] withResidualAdd(String value, java.util.function.Supplier<float[]> run) {
        String before = System.getProperty(LlamaModel.RESIDUAL_ADD_PROPERTY);
        System.setProperty(LlamaModel.RESIDUAL_ADD_PROPERTY, value);
        try {
            return run.get();
        } finally {
            if (before == null) System.clearProperty(LlamaModel.RESIDUAL_ADD_PROPERTY);
            else System.setProperty(LlamaModel.RESIDUAL_ADD_PROPERTY, before);
        }
    }

    private static float[] logits(Backend backend, int[] prompt) { return Fixtures.promptLogits(backend, CONFIG, prompt); }
}
