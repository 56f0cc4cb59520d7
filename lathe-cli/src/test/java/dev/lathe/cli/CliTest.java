package dev.lathe.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** The {@code lathe} command end to end, in-process, on real checkpoints and bad input. */
class CliTest {
    record Run(int exit, String out, String err) {}

    static Run lathe(String... args) {
        var out = new StringWriter();
        var err = new StringWriter();
        var cli = new CommandLine(new Main());
        cli.setOut(new PrintWriter(out));
        cli.setErr(new PrintWriter(err));
        cli.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println("lathe: error: " + ex.getMessage());
            return 1;
        });
        int exit = cli.execute(args);
        return new Run(exit, out.toString(), err.toString());
    }

    static Path repo() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("fixtures").resolve("golden"))) return p;
        }
        throw new IllegalStateException("repository root not found");
    }

    @Test
    void greedyGenerateOnAFixturePrintsTheTransformersContinuation() throws IOException {
        Path dir = repo().resolve("fixtures/golden/llama3-bf16");
        JsonNode ref = new ObjectMapper().readTree(dir.resolve("reference.json").toFile());
        JsonNode c = ref.get("cases").get(1);
        Run r = lathe("generate", "--backend", "cpu", "--model", dir.toString(), "--prompt", c.get("prompt").asText(),
                "--temperature", "0", "--ignore-eos", "--max-tokens", String.valueOf(c.get("greedy_ids").size()));
        assertThat(r.exit()).as(r.err()).isZero();
        assertThat(r.out()).isEqualTo(c.get("greedy_text").asText() + System.lineSeparator());
    }

    @Test
    void streamingPrintsTheSameTextAsNonStreaming() throws IOException {
        Path dir = repo().resolve("fixtures/golden/qwen2-bias");
        JsonNode c = new ObjectMapper().readTree(dir.resolve("reference.json").toFile()).get("cases").get(0);
        String[] base = {"generate", "--backend", "cpu", "--model", dir.toString(), "--prompt", c.get("prompt").asText(),
                "--temperature", "0", "--ignore-eos", "--max-tokens", "32"};
        Run plain = lathe(base);
        String[] streamed = java.util.Arrays.copyOf(base, base.length + 1);
        streamed[base.length] = "--stream";
        Run stream = lathe(streamed);
        assertThat(stream.exit()).isZero();
        assertThat(stream.out()).isEqualTo(plain.out()).isEqualTo(c.get("greedy_text").asText() + System.lineSeparator());
    }

    @Test
    void promptsPerConcurrencyWithoutAConcurrencySweepIsAClearError() {
        Run r = lathe("bench", "serving", "--url", "http://127.0.0.1:9", "--model", "m", "--prompts-per-concurrency", "4");
        assertThat(r.exit()).isNotZero();
        assertThat(r.err()).contains("--prompts-per-concurrency 4").contains("needs a concurrency sweep");
    }

    @Test
    void inspectReportsLlama3_8bParameterCount() {
        Run r = lathe("inspect", "synthetic:llama-3-8b");
        assertThat(r.exit()).as(r.err()).isZero();
        assertThat(r.out()).contains("LlamaForCausalLM").contains("8.03 B").contains("8,030,261,248");
    }

    @Test
    void inspectReadsACheckpointsDtypes() {
        Run r = lathe("inspect", repo().resolve("fixtures/golden/llama32-tied").toString());
        assertThat(r.exit()).as(r.err()).isZero();
        assertThat(r.out()).contains("F16").contains("tied embeddings");
    }

    @Test
    void missingModelDirectoryIsAClearError() {
        Run r = lathe("generate", "--backend", "cpu", "--model", "/nonexistent/model", "--prompt", "hi");
        assertThat(r.exit()).isEqualTo(1);
        assertThat(r.err()).contains("/nonexistent/model").contains("not found");
    }

    @Test
    void unknownArchitectureListsTheSupportedOnes(@TempDir Path dir) throws IOException {
        Files.writeString(dir.resolve("config.json"), """
                {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 100, "n_embd": 8}
                """);
        Run r = lathe("inspect", dir.toString());
        assertThat(r.exit()).isEqualTo(1);
        assertThat(r.err()).contains("GPT2LMHeadModel").contains("LlamaForCausalLM").contains("Qwen3ForCausalLM");
    }

    @Test
    void promptLongerThanTheContextIsRefused() {
        Path dir = repo().resolve("fixtures/golden/llama3-bf16");
        Run r = lathe("generate", "--backend", "cpu", "--model", dir.toString(), "--max-model-len", "8",
                "--prompt", "this prompt is certainly longer than eight tokens of a tiny vocabulary");
        assertThat(r.exit()).isEqualTo(1);
        assertThat(r.err()).contains("tokens").contains("context holds 8");
    }

    @Test
    void sameSeedSameOutput() {
        Path dir = repo().resolve("fixtures/golden/llama2-f32");
        String[] args = {"generate", "--backend", "cpu", "--model", dir.toString(), "--prompt", "The",
                "--temperature", "1.0", "--seed", "42", "--max-tokens", "16", "--ignore-eos"};
        Run a = lathe(args);
        Run b = lathe(args);
        assertThat(a.exit()).as(a.err()).isZero();
        assertThat(a.out()).isEqualTo(b.out()).isNotBlank();
    }

    @Test
    void chatAnswersEachTurnThroughTheTemplate() {
        Path dir = repo().resolve("fixtures/golden/llama3-bf16");
        String[] gen = {"generate", "--backend", "cpu", "--model", dir.toString(), "--chat", "--prompt", "Hello there",
                "--temperature", "0", "--max-tokens", "8", "--ignore-eos"};
        Run single = lathe(gen);
        assertThat(single.exit()).as(single.err()).isZero();
        var stdin = System.in;
        try {
            System.setIn(new java.io.ByteArrayInputStream("Hello there\nAnd again\n/exit\n".getBytes(java.nio.charset.StandardCharsets.UTF_8)));
            Run chat = lathe("chat", "--backend", "cpu", "--model", dir.toString(), "--temperature", "0", "--max-tokens", "8",
                    "--ignore-eos");
            assertThat(chat.exit()).as(chat.err()).isZero();
            // the first turn is the same conversation as generate --chat; a second answer follows
            assertThat(chat.out()).startsWith(single.out());
            assertThat(chat.out().substring(single.out().length())).isNotBlank();
        } finally {
            System.setIn(stdin);
        }
    }

    @Test
    void chatWithoutATemplateSaysSo() {
        Run r = lathe("chat", "--backend", "cpu", "--model", "synthetic:tiny");
        assertThat(r.exit()).isEqualTo(1);
        assertThat(r.err()).contains("no tokenizer");
    }

    @Test
    void benchThroughputWritesARecordThatCountsEveryToken(@TempDir Path dir) throws IOException {
        Path json = dir.resolve("t.json");
        Run r = lathe("bench", "throughput", "--backend", "cpu", "--model", "synthetic:tiny", "--input-len", "16",
                "--output-len", "8", "--num-requests", "12", "--max-num-seqs", "4", "--json", json.toString());
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode rec = new ObjectMapper().readTree(json.toFile());
        assertThat(rec.get("num_requests").asInt()).isEqualTo(12);
        assertThat(rec.get("results").get("output_tokens").asLong()).isEqualTo(12 * 8);
        assertThat(rec.get("results").get("peak_concurrency").asInt()).isBetween(1, 4);
        assertThat(rec.get("results").get("output_tok_per_s").asDouble()).isPositive();
    }

    /**
     * 40 requests of 16 + 64 tokens (5 blocks each) in 40 KV blocks: admitted as they fit, they outgrow the cache and
     * are preempted; with --guarantee-no-evict at most 8 run at once and none is. The record says which policy ran
     * and counts the engine's host time.
     */
    @Test
    void benchThroughputWithNoEvictAdmissionPreemptsNothing(@TempDir Path dir) throws IOException {
        for (boolean noEvict : new boolean[]{false, true}) {
            Path json = dir.resolve("t" + noEvict + ".json");
            var args = new java.util.ArrayList<>(java.util.List.of("bench", "throughput", "--backend", "cpu", "--model", "synthetic:tiny",
                    "--input-len", "16", "--output-len", "64", "--num-requests", "40", "--kv-blocks", "40", "--json", json.toString()));
            if (noEvict) args.add("--guarantee-no-evict");
            Run r = lathe(args.toArray(String[]::new));
            assertThat(r.exit()).as(r.err()).isZero();
            JsonNode rec = new ObjectMapper().readTree(json.toFile());
            assertThat(rec.get("engine").get("scheduler_policy").asText())
                    .isEqualTo(noEvict ? "guaranteed_no_evict" : "max_utilization");
            JsonNode res = rec.get("results");
            assertThat(res.get("output_tokens").asLong()).isEqualTo(40 * 64);
            if (noEvict) {
                assertThat(res.get("preemptions").asLong()).isZero();
                assertThat(res.get("peak_concurrency").asInt()).isBetween(1, 8);
            } else {
                assertThat(res.get("preemptions").asLong()).isPositive();
            }
            assertThat(res.get("engine_steps").asLong()).isPositive();
            assertThat(res.get("engine_host_share").asDouble()).isStrictlyBetween(0.0, 1.0);
        }
    }

    /** --profile times each op of a prefill and a decode step; on the CPU backend the model's ops all run eagerly. */
    @Test
    void benchLatencyProfilesTheOpsOfAStep(@TempDir Path dir) throws IOException {
        Path json = dir.resolve("p.json");
        Run r = lathe("bench", "latency", "--backend", "cpu", "--model", "synthetic:tiny", "--input-len", "16",
                "--output-len", "3", "--warmup", "0", "--iterations", "1", "--profile", "--json", json.toString());
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode profile = new ObjectMapper().readTree(json.toFile()).get("op_profile_ms");
        // a layer's rotation, KV write and attention are one op of the model (Backend.ropeAttention)
        assertThat(profile.get("decode").get("ropeAttention").get("calls").asInt()).as("decode steps run eagerly on the CPU").isPositive();
        JsonNode prefill = profile.get("prefill");
        int layers = 0;
        for (var it = prefill.fieldNames(); it.hasNext(); ) {
            String op = it.next();
            assertThat(op).as("layer indices are taken out of the labels").doesNotContain("layers.");
            assertThat(prefill.get(op).get("ms").asDouble()).as(op).isGreaterThanOrEqualTo(0.0);
            if (op.equals("ropeAttention")) layers = prefill.get(op).get("calls").asInt();
        }
        // every layer but the last, which the prefill (one logit row) cuts to its logit row: ropeWriteKv for all rows,
        // then attention of that row alone (LlamaModel.LAST_LAYER_LOGIT_ROWS_PROPERTY)
        assertThat(layers).as("one ropeAttention a layer but the last").isPositive();
        assertThat(prefill.get("linear self_attn.qkv_proj").get("calls").asInt()).isEqualTo(layers + 1);
        assertThat(prefill.get("ropeWriteKv").get("calls").asInt()).isEqualTo(1);
        assertThat(prefill.get("attention").get("calls").asInt()).isEqualTo(1);
        assertThat(prefill.get("embedding").get("calls").asInt()).isEqualTo(1);
        // the step's wall time holds the span from its first op to its last, which holds the ops one after another
        JsonNode step = new ObjectMapper().readTree(json.toFile()).get("op_profile_steps").get("prefill");
        double ops = 0;
        for (var it = prefill.fields(); it.hasNext(); ) ops += it.next().getValue().get("ms").asDouble();
        assertThat(step.get("ops_span_ms").asDouble()).as("span of the ops").isGreaterThanOrEqualTo(ops - 1e-6);
        assertThat(step.get("wall_ms").asDouble()).as("wall time of the step").isGreaterThanOrEqualTo(step.get("ops_span_ms").asDouble());
    }

    @Test
    void benchLatencyWritesARecord(@TempDir Path dir) throws IOException {
        Path json = dir.resolve("l.json");
        Run r = lathe("bench", "latency", "--backend", "cpu", "--model", "synthetic:tiny", "--input-len", "8",
                "--output-len", "5", "--warmup", "0", "--iterations", "2", "--json", json.toString());
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode rec = new ObjectMapper().readTree(json.toFile());
        assertThat(rec.get("backend").asText()).isEqualTo("cpu");
        JsonNode res = rec.get("results");
        assertThat(res.get("ttft_ms_p50").asDouble()).isPositive();
        // 2 iterations x 4 decode steps, each one token for batch 1
        assertThat(res.get("decode_tok_s").asDouble()).isCloseTo(1000.0 / res.get("tpot_ms_mean").asDouble(),
                org.assertj.core.api.Assertions.within(1e-6));
    }
}
