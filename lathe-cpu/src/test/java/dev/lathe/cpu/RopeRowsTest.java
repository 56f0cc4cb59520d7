package dev.lathe.cpu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.ForwardingBackend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.model.Rope;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The rotary rows a step hands to the model are those {@link Rope#fill} computes for its tokens' positions, whether
 * the runner packs and uploads them (short steps) or gathers them by position from its table on the backend (steps
 * of {@code ModelRunner.ROPE_GATHER_MIN_TOKENS} tokens and more).
 */
class RopeRowsTest {
    private static final ModelConfig CONFIG = Fixtures.tinyLlama(false, false, false);

    @Test
    void gatheredAndPackedRotaryRowsAreTheRowsOfTheirPositions() {
        List<float[][]> seen = new ArrayList<>();  // cos and sin of each step, as the first layer's rope got them
        int[] gathers = new int[1];
        try (CpuBackend cpu = new CpuBackend(2)) {
            Backend watching = new ForwardingBackend(cpu) {
                private Tensor lastCos;

                @Override public void ropeAttention(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer,
                                                    AttentionMetadata meta, float scale, Tensor out) {
                    see(cos, sin);
                    super.ropeAttention(qkv, q, cos, sin, cache, layer, meta, scale, out);
                }

                @Override public void rope(Tensor x, Tensor cos, Tensor sin) {
                    see(cos, sin);
                    super.rope(x, cos, sin);
                }

                @Override public void gatherRows(Tensor x, Tensor rows, Tensor out) {
                    if (x.cols() == CONFIG.headDim() / 2) gathers[0]++;
                    super.gatherRows(x, rows, out);
                }

                private void see(Tensor cos, Tensor sin) {
                    if (cos == lastCos) return;  // the same step's later calls
                    lastCos = cos;
                    seen.add(new float[][]{download(cos), download(sin)});
                }
            };
            int[] a = new Random(5).ints(150, 0, 97).toArray(), b = new Random(6).ints(70, 0, 97).toArray();
            try (LlamaModel model = ModelLoader.synthetic(CONFIG, watching, DType.BF16, 7, LoadProgress.NONE);
                 var runner = new ModelRunner(model, new ModelRunner.CacheConfig(4, 128, 256, DType.F32))) {
                var sa = new Sequence(0, a);
                var sb = new Sequence(1, b);
                runner.step(List.of(sa), new int[]{100}, false);         // 100 tokens, positions 0..99: gathered
                runner.step(List.of(sa, sb), new int[]{50, 70}, false);  // 120 tokens, 100..149 then 0..69: gathered
                sb.append(3);
                runner.step(List.of(sb), new int[]{1}, false);           // one token at position 70: packed
            }
        }
        assertThat(gathers[0]).as("gathers of rotary rows (cos and sin of the two long steps)").isEqualTo(4);
        int[][] positions = {range(0, 100), concat(range(100, 150), range(0, 70)), {70}};
        assertThat(seen).hasSize(positions.length);
        Rope rope = new Rope(CONFIG);
        int half = rope.half();
        for (int step = 0; step < positions.length; step++) {
            int n = positions[step].length;
            float[] cos = new float[n * half], sin = new float[n * half];
            rope.fill(positions[step], 0, n, rope.invFreq(0), cos, sin, 0);
            assertThat(seen.get(step)[0]).as("cos rows of step " + step).containsExactly(cos);
            assertThat(seen.get(step)[1]).as("sin rows of step " + step).containsExactly(sin);
        }
    }

    private static int[] range(int from, int to) {
        int[] r = new int[to - from];
        for (int i = 0; i < r.length; i++) r[i] = from + i;
        return r;
    }

    private static int[] concat(int[] x, int[] y) {
        int[] r = java.util.Arrays.copyOf(x, x.length + y.length);
        System.arraycopy(y, 0, r, x.length, y.length);
        return r;
    }
}
