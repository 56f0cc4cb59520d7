package dev.lathe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Sequence;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;

/**
 * {@code lathe bench latency}: one batch of random-token prompts, prefilled at once, then decoded greedily
 * to a fixed length (no EOS), as trtllm-bench and vllm bench latency do. Reports time to first token,
 * time per output token, decode tokens per second, and how much of each decode step the Java side spends
 * outside waiting for the device (host time = step wall time - time blocked copying logits back).
 */
@Command(name = "latency", description = "Latency of one batch: TTFT, TPOT, decode tok/s, host time per step.")
final class BenchLatencyCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Option(names = "--batch", defaultValue = "1") int batch;
    @Option(names = "--input-len", defaultValue = "128") int inputLen;
    @Option(names = "--output-len", defaultValue = "128") int outputLen;
    @Option(names = "--warmup", defaultValue = "2", description = "untimed iterations first") int warmup;
    @Option(names = "--iterations", defaultValue = "5") int iterations;
    @Option(names = "--seed", defaultValue = "0", description = "seed of the random prompts") long seed;
    @Option(names = "--json", description = "write the record here") Path json;
    @Option(names = "--card", description = "the device, as the record should name it (e.g. from nvidia-smi)") String card;
    @Option(names = "--peer-json", description = "a peer's result from the same run, embedded in the record") Path peerJson;
    @Option(names = "--profile", description = "after the timed iterations, time each op of one more prefill step and one"
            + " decode step on the device, and print (and record) the totals by op") boolean profile;

    record Iteration(double ttftMs, double[] stepMs, double[] hostMs) {}

    @Override
    public Integer call() throws IOException {
        if (batch < 1 || inputLen < 1 || outputLen < 1 || iterations < 1) {
            throw new IllegalArgumentException("--batch, --input-len, --output-len and --iterations must be at least 1");
        }
        try (Backend inner = modelOptions.openBackend();
             // the profiler sits between the model and the device only when asked for: it wraps every op
             OpProfiler profiler = profile ? new OpProfiler(inner) : null;
             TimedBackend backend = new TimedBackend(profile ? profiler : inner);
             LoadedModel m = modelOptions.load(backend)) {
            int maxLen = inputLen + outputLen;
            if (modelOptions.maxModelLen == 0) modelOptions.maxModelLen = Math.min(maxLen, m.config().maxPositionEmbeddings());
            try (ModelRunner runner = modelOptions.runner(m, batch)) {
                var rnd = new Random(seed);
                List<Iteration> timed = new ArrayList<>();
                for (int it = 0; it < warmup + iterations; it++) {
                    Iteration r = once(runner, backend, rnd, m.config().vocabSize());
                    if (it >= warmup) timed.add(r);
                    System.err.printf(Locale.ROOT, "%s iteration %d: TTFT %.2f ms, TPOT %.3f ms%n", it < warmup ? "warm-up" : "timed",
                            it, r.ttftMs(), mean(r.stepMs()));
                }
                Map<String, OpProfiler.Profile> profiles = profile ? profile(runner, profiler, rnd, m.config().vocabSize()) : Map.of();
                report(m, backend.name(), timed, profiles);
            }
        }
        return 0;
    }

    private Iteration once(ModelRunner runner, TimedBackend backend, Random rnd, int vocab) {
        List<Sequence> seqs = batchOf(0, rnd, vocab);
        int[] counts = new int[batch];
        Arrays.fill(counts, inputLen);
        double[] steps = new double[Math.max(0, outputLen - 1)];
        double[] host = new double[steps.length];
        double ttft;
        try {
            long t0 = System.nanoTime();
            boolean[] greedy = new boolean[batch]; // no row needed in full: argmax where the logits are
            var logits = runner.step(seqs, counts, greedy);
            ttft = (System.nanoTime() - t0) / 1e6;
            for (int s = 0; s < batch; s++) seqs.get(s).append(logits.argmax(s));
            Arrays.fill(counts, 1);
            for (int i = 0; i < steps.length; i++) {
                long blocked0 = backend.downloadNanos();
                long s0 = System.nanoTime();
                logits = runner.step(seqs, counts, greedy);
                for (int s = 0; s < batch; s++) seqs.get(s).append(logits.argmax(s));
                long wall = System.nanoTime() - s0;
                steps[i] = wall / 1e6;
                host[i] = (wall - (backend.downloadNanos() - blocked0)) / 1e6;
            }
        } finally {
            seqs.forEach(runner::free);
        }
        return new Iteration(ttft, steps, host);
    }

    /** The batch: sequences {@code firstId}, {@code firstId + 1}, ... of {@link #inputLen} random tokens each. */
    private List<Sequence> batchOf(int firstId, Random rnd, int vocab) {
        List<Sequence> seqs = new ArrayList<>();
        for (int b = 0; b < batch; b++) seqs.add(new Sequence(firstId + b, rnd.ints(inputLen, 0, vocab).toArray()));
        return seqs;
    }

    /**
     * One more prefill step of the batch, then one decode step, each with its ops timed ({@link OpProfiler}). Where
     * decode steps run as CUDA graphs, a decode step calls no op one by one (and a graph being recorded cannot be
     * timed), so only the prefill step is profiled; -Dlathe.graphs=false runs decode steps eagerly.
     */
    private Map<String, OpProfiler.Profile> profile(ModelRunner runner, OpProfiler profiler, Random rnd, int vocab) {
        Map<String, OpProfiler.Profile> out = new LinkedHashMap<>();
        boolean graphs = ModelRunner.graphsEnabled(profiler);
        if (inputLen == 1 && graphs) {  // a one-token prefill is a decode step: a graph
            System.out.println("a one-token prefill runs as a CUDA graph: run with -Dlathe.graphs=false to profile it");
            return out;
        }
        List<Sequence> seqs = batchOf(10_000, rnd, vocab);
        int[] counts = new int[batch];
        Arrays.fill(counts, inputLen);
        boolean[] greedy = new boolean[batch];
        try {
            profiler.start();
            var logits = runner.step(seqs, counts, greedy);
            out.put("prefill", profiler.stop());
            for (int s = 0; s < batch; s++) seqs.get(s).append(logits.argmax(s));
            if (outputLen > 1 && graphs) {
                System.out.println("decode steps run as CUDA graphs: run with -Dlathe.graphs=false to profile one");
            } else if (outputLen > 1) {
                Arrays.fill(counts, 1);
                profiler.start();
                runner.step(seqs, counts, greedy);
                out.put("decode", profiler.stop());
            }
        } finally {
            seqs.forEach(runner::free);
        }
        out.forEach((step, p) -> {
            System.out.printf(Locale.ROOT, "ops of one %s step of batch %d (device time between marks):%n%s", step, batch,
                    OpProfiler.table(p));
            System.out.printf(Locale.ROOT, "step wall time %.3f ms: device span of its ops %.3f ms (the ops %.3f, gaps between"
                    + " them %.3f), outside the span %.3f ms%n", p.wallMs(), p.spanMs(), p.opsMs(), p.spanMs() - p.opsMs(),
                    p.wallMs() - p.spanMs());
            System.out.printf(Locale.ROOT, "host: %.3f ms before the first op was called, %.3f ms calling the ops, %.3f ms from"
                    + " the last op's return to the step's%n", p.beforeFirstOpMs(), p.callingOpsMs(), p.afterLastOpMs());
            System.out.printf(Locale.ROOT, "first calls: %s%n", String.join(", ", p.firstCalls()));
        });
        return out;
    }

    private void report(LoadedModel m, String backendName, List<Iteration> timed, Map<String, OpProfiler.Profile> profiles)
            throws IOException {
        double[] ttft = timed.stream().mapToDouble(Iteration::ttftMs).sorted().toArray();
        double[] tpot = timed.stream().flatMapToDouble(i -> Arrays.stream(i.stepMs())).sorted().toArray();
        double[] host = timed.stream().flatMapToDouble(i -> Arrays.stream(i.hostMs())).sorted().toArray();
        double meanTpot = mean(tpot);
        double decodeTokS = meanTpot > 0 ? batch * 1000.0 / meanTpot : 0;
        double hostShare = meanTpot > 0 ? mean(host) / meanTpot : 0;
        System.out.printf(Locale.ROOT, "model %s on %s, batch %d, input %d, output %d, decode graphs %s%n", m.name(), backendName,
                batch, inputLen, outputLen, ModelRunner.graphsEnabled(m.model().backend()) ? "on" : "off");
        System.out.printf(Locale.ROOT, "TTFT     p50 %.2f ms  p90 %.2f ms%n", pct(ttft, 50), pct(ttft, 90));
        if (tpot.length > 0) {
            System.out.printf(Locale.ROOT, "TPOT     p50 %.3f ms  p90 %.3f ms  mean %.3f ms  -> decode %.1f tok/s%n",
                    pct(tpot, 50), pct(tpot, 90), meanTpot, decodeTokS);
            System.out.printf(Locale.ROOT, "host     mean %.3f ms per decode step (%.1f%% of the step)%n", mean(host), 100 * hostShare);
        }
        if (json == null) return;
        var mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode rec = mapper.createObjectNode();
        rec.put("benchmark", "latency");
        rec.put("date", Instant.now().toString());
        rec.put("commit", System.getenv().getOrDefault("LATHE_COMMIT", "unknown"));
        rec.put("card", card != null ? card : "unknown");
        rec.put("backend", backendName);
        rec.put("model", m.name());
        rec.put("weight_dtype", m.model().weightDtype().name());
        rec.put("kv_cache_dtype", ModelOptions.cacheDtype(m).name());
        rec.put("batch", batch);
        rec.put("input_len", inputLen);
        rec.put("output_len", outputLen);
        rec.put("warmup", warmup);
        rec.put("iterations", iterations);
        rec.put("decode_graphs", ModelRunner.graphsEnabled(m.model().backend()));
        ObjectNode r = rec.putObject("results");
        r.put("ttft_ms_p50", pct(ttft, 50));
        r.put("ttft_ms_p90", pct(ttft, 90));
        if (tpot.length > 0) {
            r.put("tpot_ms_p50", pct(tpot, 50));
            r.put("tpot_ms_p90", pct(tpot, 90));
            r.put("tpot_ms_mean", meanTpot);
            r.put("decode_tok_s", decodeTokS);
            r.put("host_ms_per_step_mean", mean(host));
            r.put("host_share_of_step", hostShare);
        }
        if (!profiles.isEmpty()) {
            ObjectNode prof = rec.putObject("op_profile_ms"), spans = rec.putObject("op_profile_steps");
            profiles.forEach((step, p) -> {
                ObjectNode s = prof.putObject(step);
                for (OpProfiler.Row row : p.rows()) s.putObject(row.op()).put("calls", row.calls()).put("ms", row.millis());
                spans.putObject(step).put("wall_ms", p.wallMs()).put("ops_span_ms", p.spanMs())
                        .put("host_before_first_op_ms", p.beforeFirstOpMs()).put("host_calling_ops_ms", p.callingOpsMs())
                        .put("host_after_last_op_ms", p.afterLastOpMs());
            });
        }
        if (peerJson != null && Files.exists(peerJson)) rec.set("peer_same_run", mapper.readTree(peerJson.toFile()));
        Files.writeString(json, mapper.writeValueAsString(rec));
    }

    static double mean(double[] v) {
        return v.length == 0 ? 0 : Arrays.stream(v).sum() / v.length;
    }

    /** Nearest-rank percentile of a sorted array. */
    static double pct(double[] sorted, double p) {
        if (sorted.length == 0) return 0;
        int i = (int) Math.ceil(p / 100.0 * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
    }
}
