package dev.lathe.cpu.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.RopeScaling;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.LLM;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.cpu.CpuBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

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

    static Stream<Path> fixtures() throws IOException {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            Path g = p.resolve("fixtures").resolve("golden");
            if (Files.isDirectory(g)) {
                try (var s = Files.list(g)) {
                    return s.filter(d -> Files.exists(d.resolve("reference.json"))).sorted().toList().stream();
                }
            }
        }
        throw new IllegalStateException("fixtures/golden not found above " + Path.of("").toAbsolutePath());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void batchedChunkedGreedyTextMatchesTransformers(Path dir) throws IOException {
        JsonNode cases = new ObjectMapper().readTree(dir.resolve("reference.json").toFile()).get("cases");
        var prompts = new ArrayList<String>();
        for (JsonNode c : cases) prompts.add(c.get("prompt").asText());
        var params = SamplingParams.builder().temperature(0).ignoreEos(true).maxTokens(32).build();
        try (var m = LoadedModel.open(new ModelRef.Directory(dir), backend, DType.BF16, 0, LoadProgress.NONE)) {
            // Dynamic NTK rope rotates a step's tokens by the sequence length at that step (as transformers
            // does), so a prompt past max_position_embeddings gives other keys when split: such models are
            // prefilled whole here. Every other model is prefilled in chunks of at most 16 tokens.
            boolean dynamic = m.config().ropeScaling().type() == RopeScaling.Type.DYNAMIC;
            var config = new EngineConfig(8, dynamic ? 256 : 16, 4, 256, 128, 64, true, DType.F32);
            generateMatches(m, config, cases, prompts, params);
        }
    }

    static void generateMatches(LoadedModel m, EngineConfig config, JsonNode cases, List<String> prompts,
                                SamplingParams params) {
        try (var engine = LlmEngine.of(m, config)) {
            var results = new LLM(engine).generate(prompts, params);
            for (int i = 0; i < cases.size(); i++) {
                JsonNode c = cases.get(i);
                var out = results.get(i).outputs().getFirst();
                int[] want = new int[c.get("greedy_ids").size()];
                for (int k = 0; k < want.length; k++) want[k] = c.get("greedy_ids").get(k).asInt();
                assertThat(results.get(i).promptIds()).as("prompt ids of case %d", i).hasSize(c.get("input_ids").size());
                assertThat(out.tokenIds()).as("tokens of case %d", i).containsExactly(want);
                assertThat(out.text()).as("text of case %d", i).isEqualTo(c.get("greedy_text").asText());
                assertThat(out.finishReason()).isEqualTo(FinishReason.LENGTH);
            }
        }
    }

    @org.junit.jupiter.api.Test
    void aStopStringCutsTheTextBeforeItAndIsReported() throws IOException {
        Path dir = fixtures().filter(d -> d.getFileName().toString().equals("llama3-bf16")).findFirst().orElseThrow();
        JsonNode c = new ObjectMapper().readTree(dir.resolve("reference.json").toFile()).get("cases").get(1);
        String full = c.get("greedy_text").asText();
        // the first run of three ASCII letters after the start of the text
        int at = 1;
        while (!(full.substring(at, at + 3).chars().allMatch(ch -> ch < 128 && Character.isLetter(ch)))) at++;
        String stop = full.substring(at, at + 3);
        var params = SamplingParams.builder().temperature(0).ignoreEos(true).maxTokens(32).stop(stop).build();
        try (var m = LoadedModel.open(new ModelRef.Directory(dir), backend, DType.BF16, 0, LoadProgress.NONE);
             var engine = LlmEngine.of(m, new EngineConfig(8, 16, 4, 256, 128, 64, true, DType.F32))) {
            var out = new LLM(engine).generate(List.of(c.get("prompt").asText()), params).getFirst().outputs().getFirst();
            assertThat(out.text()).isEqualTo(full.substring(0, full.indexOf(stop)));
            assertThat(out.finishReason()).isEqualTo(FinishReason.STOP);
            assertThat(out.stopReason()).isEqualTo(stop);
            assertThat(out.tokenIds().length).isLessThan(32);
        }
    }
}
