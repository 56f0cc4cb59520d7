package dev.lathe.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * LlamaModel.LAST_LAYER_LOGIT_ROWS_PROPERTY: a step that wants logits for fewer rows than it computes runs its last
 * layer past attention on those rows alone. On the CPU backend every op is float32, so the prefill's logits agree with
 * the whole layer's to float32 rounding and pick the same tokens, with biases and q/k norms too; the decode step after
 * it and a step that wants every row's logits are not cut and give the same bits.
 */
class LastLayerLogitRowsTest {

    @ParameterizedTest
    @CsvSource({"false, false, false", "true, true, true"})
    void theLastLayerOnTheLogitRowsGivesTheSameLogits(boolean attentionBias, boolean mlpBias, boolean qkNorm) {
        ModelConfig config = Fixtures.tinyLlama(attentionBias, mlpBias, qkNorm);
        int[][] prompts = {new Random(3).ints(23, 0, 97).toArray(), new Random(4).ints(9, 0, 97).toArray()};
        List<float[]> on = stepLogits(config, prompts, true), off = stepLogits(config, prompts, false);
        assertThat(on).hasSameSizeAs(off);
        // the prefill's last rows: the same float32 arithmetic, but the CPU's linear sums a row's products in another
        // order for one row (the decode kernel) than for a block of rows, so the logits may differ in their last bits
        float[] a = on.get(0), b = off.get(0);
        assertThat(a).hasSameSizeAs(b);
        double worst = 0, scale = 0;
        for (int j = 0; j < a.length; j++) {
            worst = Math.max(worst, Math.abs(a[j] - b[j]));
            scale = Math.max(scale, Math.abs(b[j]));
        }
        System.out.printf("prefill logits: largest difference %.3g, largest logit %.3g%n", worst, scale);
        assertThat(worst).as("prefill logits, largest difference").isLessThanOrEqualTo(1e-5 * scale);
        int vocab = config.vocabSize();
        for (int s = 0; s < 2; s++) assertThat(argmax(a, s, vocab)).as("sequence %d's next token", s).isEqualTo(argmax(b, s, vocab));
        // the decode step after it (one row a sequence: nothing cut) reads the same cache, and a step that wants every
        // row's logits is not cut: the same bits
        for (int i = 1; i < on.size(); i++) {
            float[] x = on.get(i), y = off.get(i);
            assertThat(x).hasSameSizeAs(y);
            for (int j = 0; j < x.length; j++) {
                assertThat(Float.floatToRawIntBits(x[j])).as("step %d logit %d", i, j).isEqualTo(Float.floatToRawIntBits(y[j]));
            }
        }
    }

    private static int argmax(float[] d, int row, int vocab) {
        int best = 0;
        for (int v = 1; v < vocab; v++) if (d[row * vocab + v] > d[row * vocab + best]) best = v;
        return best;
    }

    /** The prefill's last-row logits, then a decode step's, then the prefill again with every row's logits. */
    private static List<float[]> stepLogits(ModelConfig config, int[][] prompts, boolean logitRowsOnly) {
        String key = LlamaModel.LAST_LAYER_LOGIT_ROWS_PROPERTY, before = System.getProperty(key);
        System.setProperty(key, Boolean.toString(logitRowsOnly));
        List<float[]> out = new ArrayList<>();
        try (CpuBackend cpu = new CpuBackend(2);
             LlamaModel model = ModelLoader.synthetic(config, cpu, DType.BF16, 7, LoadProgress.NONE);
             ModelRunner runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(64, 4, 4, DType.F32))) {
            List<Sequence> seqs = List.of(new Sequence(0, prompts[0].clone()), new Sequence(1, prompts[1].clone()));
            var logits = runner.step(seqs, new int[]{prompts[0].length, prompts[1].length}, false);
            out.add(logits.data());
            for (int s = 0; s < 2; s++) seqs.get(s).append(argmax(logits.data(), s, config.vocabSize()));
            out.add(runner.step(seqs, new int[]{1, 1}, false).data());
            seqs.forEach(runner::free);
            List<Sequence> again = List.of(new Sequence(2, prompts[0].clone()));
            out.add(runner.step(again, new int[]{prompts[0].length}, true).data());
            again.forEach(runner::free);
        } finally {
            if (before == null) System.clearProperty(key);
            else System.setProperty(key, before);
        }
        return out;
    }
}
