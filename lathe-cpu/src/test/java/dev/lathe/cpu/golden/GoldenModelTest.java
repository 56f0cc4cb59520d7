package dev.lathe.cpu.golden;

import dev.lathe.core.generate.GoldenReference;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.BackendProvider;
import dev.lathe.core.checkpoint.Checkpoint;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.generate.GreedyDecoder;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.ServiceLoader;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The CPU backend against Hugging Face transformers (float32, eager attention) on every golden
 * fixture: same token ids from the tokenizer, logits of every prompt position within float32 tolerance,
 * and the identical 32-token greedy continuation — one sequence at a time and all cases batched in
 * one paged step.
 */
class GoldenModelTest {
    /**
     * Float32 logits computed with a different summation order differ by a few ulps of the partial sums;
     * through 2 layers and a 64-wide hidden state that stays below 1e-4 for logits of magnitude up to ~10.
     */
    static final float ABS_TOL = 1e-4f;
    static final float REL_TOL = 1e-4f;

    static Backend backend;

    @BeforeAll
    static void start() {
        BackendProvider cpu = ServiceLoader.load(BackendProvider.class).stream().map(ServiceLoader.Provider::get)
                .filter(p -> p.name().equals("cpu")).findFirst().orElseThrow();
        backend = cpu.create(2);
    }

    @AfterAll
    static void stop() {
        backend.close();
    }

    static List<GoldenReference> fixtures() throws IOException {
        List<GoldenReference> all = GoldenReference.all();
        assertThat(all).as("golden fixtures under fixtures/golden").hasSizeGreaterThanOrEqualTo(10);
        return all;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void tokenizerMatchesTransformers(GoldenReference f) {
        try (Tokenizer tok = Tokenizer.load(f.dir())) {
            for (var c : f.cases()) {
                assertThat(tok.encode(c.prompt(), true)).as("ids of case %d", c.index()).containsExactly(c.inputIds());
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void promptLogitsMatchTransformers(GoldenReference f) {
        try (Checkpoint ckpt = Checkpoint.open(f.dir());
             LlamaModel model = ModelLoader.load(ckpt.config(), ckpt, backend, LoadProgress.NONE);
             ModelRunner runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(256, 4, 16, DType.F32))) {
            for (var c : f.cases()) {
                var seq = new Sequence(c.index(), c.inputIds());
                var logits = runner.step(List.of(seq), new int[]{c.inputIds().length}, true);
                assertThat(logits.vocab()).isEqualTo(c.vocab());
                for (int pos = 0; pos < c.inputIds().length; pos++) {
                    for (int v = 0; v < c.vocab(); v++) {
                        float ref = c.logit(pos, v);
                        float got = logits.data()[pos * c.vocab() + v];
                        float err = Math.abs(got - ref) / (ABS_TOL + REL_TOL * Math.abs(ref));
                        if (!(err <= 1)) {
                            throw new AssertionError(f.variant() + " case " + c.index() + " position " + pos + " token " + v
                                    + ": logit " + got + ", transformers " + ref);
                        }
                    }
                }
                runner.free(seq);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void greedyContinuationMatchesTransformers(GoldenReference f) {
        try (Checkpoint ckpt = Checkpoint.open(f.dir());
             LlamaModel model = ModelLoader.load(ckpt.config(), ckpt, backend, LoadProgress.NONE);
             ModelRunner runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(256, 4, 16, DType.F32))) {
            for (var c : f.cases()) {
                int[] got = GreedyDecoder.decode(runner, List.of(new Sequence(c.index(), c.inputIds())), c.greedyIds().length).getFirst();
                assertThat(got).as("%s case %d", f.variant(), c.index()).containsExactly(c.greedyIds());
            }
            // all cases at once: different lengths share each step and the paged cache
            List<Sequence> batch = new ArrayList<>();
            for (var c : f.cases()) batch.add(new Sequence(100 + c.index(), c.inputIds()));
            List<int[]> outs = GreedyDecoder.decode(runner, batch, f.cases().getFirst().greedyIds().length);
            for (var c : f.cases()) {
                assertThat(outs.get(c.index())).as("%s case %d in a batch", f.variant(), c.index()).containsExactly(c.greedyIds());
            }
        }
    }

}
