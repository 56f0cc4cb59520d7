package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.RopeScaling;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/**
 * The model over the paged cache is one function of the token sequence, however the tokens are split
 * into steps and whichever other sequences share a step: prefill at once, in chunks, token by token,
 * or batched with others, the logits of each position are the same.
 */
class ModelRunnerTest {
    static CpuBackend backend;
    static LlamaModel model;

    @BeforeAll
    static void load() {
        backend = new CpuBackend(2);
        // a small GQA model with q/k norm, QKV bias, dynamic rope and a sliding window: every code path at once
        var config = new ModelConfig("Qwen3ForCausalLM", "qwen3", 97, 48, 80, 2, 4, 2, 16, 32, 1e-6, 10000,
                new RopeScaling(RopeScaling.Type.DYNAMIC, 2.0, 0, 0, 0), false, true, false, true, 24, 1, List.of(2), "bfloat16");
        model = ModelLoader.synthetic(config, backend, DType.BF16, 7, LoadProgress.NONE);
    }

    @AfterAll
    static void close() {
        model.close();
        backend.close();
    }

    static int[] randomTokens(long seed, int n) {
        var r = new Random(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = r.nextInt(97);
        return t;
    }

    ModelRunner runner(int blockSize) {
        return new ModelRunner(model, ModelRunner.CacheConfig.forSequences(64, 4, blockSize, DType.F32));
    }

    @Test
    void chunkedPrefillEqualsOneStep() {
        int[] prompt = randomTokens(1, 29);
        float[] whole, chunked = new float[29 * 97];
        try (var r = runner(4)) {
            whole = r.step(List.of(new Sequence(0, prompt)), new int[]{29}, true).data();
        }
        try (var r = runner(4)) {
            var seq = new Sequence(1, prompt);
            int done = 0;
            for (int chunk : new int[]{5, 1, 11, 12}) {
                var l = r.step(List.of(seq), new int[]{chunk}, true);
                System.arraycopy(l.data(), 0, chunked, done * 97, chunk * 97);
                done += chunk;
            }
        }
        // positions beyond max_position_embeddings (32) are not reached: dynamic rope stays static here,
        // so every split computes bit-identical tables
        assertClose(chunked, whole);
    }

    @Test
    void batchedSequencesEqualEachAlone() {
        int[] a = randomTokens(2, 7), b = randomTokens(3, 19), c = randomTokens(4, 1);
        float[][] alone = new float[3][];
        int[][] prompts = {a, b, c};
        for (int i = 0; i < 3; i++) {
            try (var r = runner(16)) {
                alone[i] = r.step(List.of(new Sequence(i, prompts[i])), new int[]{prompts[i].length}, false).row(0);
            }
        }
        try (var r = runner(16)) {
            var seqs = List.of(new Sequence(0, a), new Sequence(1, b), new Sequence(2, c));
            var l = r.step(seqs, new int[]{7, 19, 1}, false);
            for (int i = 0; i < 3; i++) assertClose(l.row(i), alone[i]);
        }
    }

    @Test
    void aSelectiveStepReturnsEveryArgmaxAndOnlyTheRowsAskedFor() {
        int[] a = randomTokens(5, 9), b = randomTokens(6, 3), c = randomTokens(7, 14);
        ModelRunner.StepLogits full, some;
        try (var r = runner(16)) {
            full = r.step(List.of(new Sequence(0, a), new Sequence(1, b), new Sequence(2, c)), new int[]{9, 3, 14}, false);
        }
        try (var r = runner(16)) {
            some = r.step(List.of(new Sequence(0, a), new Sequence(1, b), new Sequence(2, c)), new int[]{9, 3, 14},
                    new boolean[]{false, true, false});
        }
        for (int i = 0; i < 3; i++) {
            float[] row = full.row(i);
            int best = 0;
            for (int v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
            assertThat(some.argmax(i)).as("argmax of row %d", i).isEqualTo(best);
        }
        assertThat(some.hasRow(1)).isTrue();
        assertThat(some.row(1)).containsExactly(full.row(1));
        assertThat(some.data()).hasSize(97); // one row came back, not three
        assertThat(some.hasRow(0)).isFalse();
        assertThatThrownBy(() -> some.row(2)).hasMessageContaining("row 2 was not kept");
    }

    @Test
    void argmaxRowsTakesTheLowestColumnOnTiesAndFlagsNaN() {
        float nan = Float.NaN, inf = Float.NEGATIVE_INFINITY;
        float[] x = {1, 5, 5, 2,   inf, inf, inf, inf,   3, nan, 9, 1,   -2, -1, -7, -1};
        try (var t = backend.upload(x, 4, 4)) {
            assertThat(backend.argmaxRows(t)).containsExactly(1, 0, -1, 1);
        }
        var steps = new ModelRunner.StepLogits(new float[0], 4, new int[]{0}, new int[]{-1}, new int[]{-1}, null);
        assertThatThrownBy(() -> steps.argmax(0)).hasMessageContaining("NaN");
    }

    /**
     * Decode steps through recorded graphs (padded batch, block tables widened as the context grows) give
     * the tokens and logits that eager steps give.
     */
    @Test
    void decodeStepsReplayedFromGraphsEqualEagerSteps() {
        var config = model.config();
        try (var recording = new RecordingGraphBackend(new CpuBackend(2));
             var graphModel = ModelLoader.synthetic(config, recording, DType.BF16, 7, LoadProgress.NONE);
             var eager = runner(2);
             var graphed = new ModelRunner(graphModel, ModelRunner.CacheConfig.forSequences(64, 4, 2, DType.F32))) {
            int[][] prompts = {randomTokens(11, 5), randomTokens(12, 9), randomTokens(13, 2)};
            List<Sequence> a = new java.util.ArrayList<>(), b = new java.util.ArrayList<>();
            for (int i = 0; i < 3; i++) {
                a.add(new Sequence(i, prompts[i]));
                b.add(new Sequence(i, prompts[i]));
            }
            int[] counts = {5, 9, 2};
            boolean[] full = {false, true, false};
            for (int step = 0; step < 30; step++) {
                var la = eager.step(a, counts, full);
                var lb = graphed.step(b, counts, full);
                for (int s = 0; s < 3; s++) {
                    assertThat(lb.argmax(s)).as("step %d sequence %d", step, s).isEqualTo(la.argmax(s));
                    a.get(s).append(la.argmax(s));
                    b.get(s).append(lb.argmax(s));
                }
                // a graph step is padded (3 sequences run as 4 rows), and the CPU matmul blocks rows in fours, so
                // sums may round differently: float32 rounding, far below any change a wrong input would make
                float[] ra = la.row(1), rb = lb.row(1);
                for (int v = 0; v < ra.length; v++) {
                    assertThat((double) rb[v]).as("full row, step %d, logit %d", step, v).isCloseTo(ra[v], within(1e-5));
                }
                java.util.Arrays.fill(counts, 1);
            }
            // one recording per table width (16 blocks of 2 tokens, then 32 once a context passes 32 tokens)
            assertThat(recording.captures).isEqualTo(2);
            assertThat(recording.replays).isEqualTo(29 - 2);
        }
    }

    /**
     * A step whose every row the backend draws takes one trip to the device: no argmax rows. A step with a row the
     * backend does not draw still gets them.
     */
    @Test
    void aStepDrawnWhollyByTheBackendSkipsTheArgmax() {
        var config = model.config();
        try (var backend = new RecordingGraphBackend(new CpuBackend(2), true);
             var m = ModelLoader.synthetic(config, backend, DType.BF16, 7, LoadProgress.NONE);
             var r = new ModelRunner(m, ModelRunner.CacheConfig.forSequences(64, 2, 4, DType.F32))) {
            List<Sequence> seqs = List.of(new Sequence(0, randomTokens(21, 6)), new Sequence(1, randomTokens(22, 3)));
            var spec = new dev.lathe.core.backend.SampleSpec(1.25f, 20, 0.9, 0f, 99, 0);
            boolean[] none = {false, false};
            var both = r.step(seqs, new int[]{6, 3}, none, new dev.lathe.core.backend.SampleSpec[]{spec, spec});
            assertThat(backend.argmaxCalls()).as("argmax calls after a wholly drawn step").isZero();
            assertThat(both.hasSample(0) && both.hasSample(1)).isTrue();
            assertThatThrownBy(() -> both.argmax(0)).isInstanceOf(IllegalStateException.class);
            seqs.get(0).append(both.sample(0));
            seqs.get(1).append(both.sample(1));
            var mixed = r.step(seqs, new int[]{1, 1}, none, new dev.lathe.core.backend.SampleSpec[]{spec, null});
            assertThat(backend.argmaxCalls()).as("argmax calls after a step with an undrawn row").isEqualTo(1);
            assertThat(mixed.hasSample(0)).isTrue();
            assertThat(mixed.hasSample(1)).isFalse();
            assertThat(mixed.argmax(1)).isNotNegative();
        }
    }

    @Test
    void contextBeyondTheLimitIsRefused() {
        try (var r = runner(16)) {
            var seq = new Sequence(0, randomTokens(5, 65));
            assertThatThrownBy(() -> r.step(List.of(seq), new int[]{65}, false))
                    .hasMessageContaining("65 tokens").hasMessageContaining("context holds 64");
        }
    }

    @Test
    void freedBlocksAreReused() {
        try (var r = runner(16)) {
            int free = r.freeBlocks();
            var seq = new Sequence(0, randomTokens(6, 40));
            r.step(List.of(seq), new int[]{40}, false);
            assertThat(r.freeBlocks()).isEqualTo(free - 3);
            r.free(seq);
            assertThat(r.freeBlocks()).isEqualTo(free);
        }
    }

    static void assertClose(float[] got, float[] want) {
        assertThat(got).hasSameSizeAs(want);
        for (int i = 0; i < got.length; i++) {
            float tol = 1e-5f + 1e-5f * Math.abs(want[i]);
            if (!(Math.abs(got[i] - want[i]) <= tol)) {
                throw new AssertionError("element " + i + ": " + got[i] + " vs " + want[i]);
            }
        }
    }
}
