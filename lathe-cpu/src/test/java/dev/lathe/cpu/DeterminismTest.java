package dev.lathe.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The CPU backend's float32 sums do not depend on how the JIT compiled them: the engine's exactness tests (a
 * request alone against the same request among others) compare bits from calls made at different times.
 */
class DeterminismTest {
    @Test
    void aStepGivesTheSameBitsBeforeAndAfterItsCodeIsCompiled() {
        var config = Fixtures.tinyLlama(false, false, false);
        int[] prompt = new Random(3).ints(21, 0, 97).toArray();
        try (CpuBackend backend = new CpuBackend(2);
             LlamaModel model = ModelLoader.synthetic(config, backend, DType.BF16, 5, LoadProgress.NONE);
             var runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(64, 4, 4, DType.F32))) {
            float[] first = step(runner, prompt, 0);
            // enough calls for the sums' loops to be compiled by the optimizing JIT
            for (int i = 1; i <= 300; i++) step(runner, prompt, i);
            float[] later = step(runner, prompt, 301);
            assertThat(Arrays.mismatch(later, first)).as("first logit that differs between the first step and the 302nd").isEqualTo(-1);
        }
    }

    private static float[] step(ModelRunner runner, int[] prompt, long id) {
        var seq = new Sequence(id, prompt);
        float[] logits = runner.step(List.of(seq), new int[]{prompt.length}, true).data();
        runner.free(seq);
        return logits;
    }
}
