package dev.lathe.cpu.golden;

import dev.lathe.core.generate.GoldenReference;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lathe.core.checkpoint.Checkpoint;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.generate.GreedyDecoder;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Perplexity;
import dev.lathe.core.generate.Sequence;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.tokenizer.Tokenizer;
import dev.lathe.cpu.CpuBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/**
 * The shipped model (models/kjv-tiny, trained with transformers) on the CPU backend: its logits and greedy
 * continuations match transformers', and the validation perplexity in its model card is reproduced.
 */
class ShippedModelTest {
    static Path dir;
    static CpuBackend backend;
    static Checkpoint ckpt;
    static LlamaModel model;

    @BeforeAll
    static void load() {
        dir = GoldenReference.root().getParent().getParent().resolve("models").resolve("kjv-tiny");
        backend = new CpuBackend(2);
        ckpt = Checkpoint.open(dir);
        model = ModelLoader.load(ckpt.config(), ckpt, backend, LoadProgress.NONE);
    }

    @AfterAll
    static void close() {
        model.close();
        ckpt.close();
        backend.close();
    }

    @Test
    void logitsAndGreedyMatchTransformers() throws IOException {
        GoldenReference f = GoldenReference.load(dir);
        assertThat(f.cases()).hasSize(3);
        try (var runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(128, 1, 16, DType.F32))) {
            for (var c : f.cases()) {
                var seq = new Sequence(c.index(), c.inputIds());
                var logits = runner.step(List.of(seq), new int[]{c.inputIds().length}, true);
                for (int i = 0; i < c.logits().length; i++) {
                    float ref = c.logits()[i];
                    assertThat(logits.data()[i]).as("%s logit %d", c.prompt(), i)
                            .isCloseTo(ref, within(GoldenModelTest.ABS_TOL + GoldenModelTest.REL_TOL * Math.abs(ref)));
                }
                runner.free(seq);
                int[] greedy = GreedyDecoder.decode(runner, List.of(new Sequence(10 + c.index(), c.inputIds())),
                        c.greedyIds().length).getFirst();
                assertThat(greedy).as(c.prompt()).containsExactly(c.greedyIds());
            }
        }
    }

    @Test
    void validationSlicePerplexityMatchesTheModelCard() throws IOException {
        JsonNode slice = new ObjectMapper().readTree(dir.resolve("reference.json").toFile()).get("valid_slice");
        String text = Files.readString(dir.resolve(slice.get("file").asText()), StandardCharsets.UTF_8);
        try (Tokenizer tok = Tokenizer.load(dir);
             var runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(
                     slice.get("window").asInt() + 1, 1, 16, DType.F32))) {
            int[] ids = tok.encode(text, false);
            JsonNode expectedIds = slice.get("input_ids");
            for (int i = 0; i < expectedIds.size(); i++) {
                assertThat(ids[i]).as("token %d of valid.txt", i).isEqualTo(expectedIds.get(i).asInt());
            }
            var r = Perplexity.evaluate(runner, ids, slice.get("window").asInt(), slice.get("windows").asInt(), tok.bosTokenId());
            assertThat(r.scoredTokens()).isEqualTo(slice.get("scored_tokens").asLong());
            double expected = slice.get("perplexity").asDouble();
            // the issue asks for 1%; float32 with another summation order lands far closer
            assertThat(r.perplexity()).isCloseTo(expected, within(expected * 1e-3));
        }
    }
}
