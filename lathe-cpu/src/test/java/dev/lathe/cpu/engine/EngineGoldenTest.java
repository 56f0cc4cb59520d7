package dev.lathe.cpu.engine;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.LLM;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.generate.GoldenReference;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.cpu.CpuBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The offline API over the engine on the golden checkpoints: the fixture's prompts as text, batched
 * together, prefilled in small chunks, give transformers' greedy tokens and text.
 */
class EngineGoldenTest {
    static CpuBackend backend;

    @BeforeAll
    static void start() { backend = new CpuBackend(2); }

    @AfterAll
    static void stop() { backend.close(); }

    static List<GoldenReference> fixtures() throws IOException {
        return GoldenReference.all();
    }

    static LoadedModel open(GoldenReference f) {
        return LoadedModel.open(new ModelRef.Directory(f.dir()), backend, DType.BF16, 0, LoadProgress.NONE);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void batchedChunkedGreedyTextMatchesTransformers(GoldenReference f) {
        var prompts = f.cases().stream().map(GoldenReference.Case::prompt).toList();
        var params = SamplingParams.builder().temperature(0).ignoreEos(true).maxTokens(32).build();
        try (var m = open(f)) {
            // every model, dynamic NTK rope included, is prefilled in chunks of at most 16 tokens
            try (var engine = LlmEngine.of(m, new EngineConfig(8, 16, 4, 256, 128, 64, true, DType.F32))) {
                var results = new LLM(engine).generate(prompts, params);
                for (var c : f.cases()) {
                    var r = results.get(c.index());
                    var out = r.outputs().getFirst();
                    assertThat(r.promptIds()).as("prompt ids of case %d", c.index()).containsExactly(c.inputIds());
                    assertThat(out.tokenIds()).as("tokens of case %d", c.index()).containsExactly(c.greedyIds());
                    assertThat(out.text()).as("text of case %d", c.index()).isEqualTo(c.greedyText());
                    assertThat(out.finishReason()).isEqualTo(FinishReason.LENGTH);
                }
            }
        }
    }

    @Test
    void aStopStringCutsTheTextBeforeItAndIsReported() throws IOException {
        var f = GoldenReference.load(GoldenReference.root().resolve("llama3-bf16"));
        var c = f.cases().get(1);
        String full = c.greedyText();
        // the first run of three ASCII letters after the start of the text
        int at = 1;
        while (!(full.substring(at, at + 3).chars().allMatch(ch -> ch < 128 && Character.isLetter(ch)))) at++;
        String stop = full.substring(at, at + 3);
        var params = SamplingParams.builder().temperature(0).ignoreEos(true).maxTokens(32).stop(stop).build();
        try (var m = open(f); var engine = LlmEngine.of(m, new EngineConfig(8, 16, 4, 256, 128, 64, true, DType.F32))) {
            var out = new LLM(engine).generate(List.of(c.prompt()), params).getFirst().outputs().getFirst();
            assertThat(out.text()).isEqualTo(full.substring(0, full.indexOf(stop)));
            assertThat(out.finishReason()).isEqualTo(FinishReason.STOP);
            assertThat(out.stopReason()).isEqualTo(stop);
            assertThat(out.tokenIds().length).isLessThan(32);
        }
    }
}
