package dev.lathe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.KvCacheSizing;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.engine.RequestOutput;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.sampling.SamplingParams;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
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
import java.util.concurrent.TimeUnit;

/**
 * {@code lathe bench throughput}: offline throughput over the engine, the trtllm-bench method:
 * {@code --num-requests} prompts of {@code --input-len} random tokens (seeded), each asking for exactly
 * {@code --output-len} tokens (EOS ignored), all submitted at once; the clock runs from the first submit
 * to the last token.
 */
@Command(name = "throughput", description = "Requests of fixed input and output length, all at once, through the engine; tokens per second.")
final class BenchCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Option(names = "--input-len", defaultValue = "128", description = "prompt tokens per request (default: ${DEFAULT-VALUE})")
    int inputLen;

    @Option(names = "--output-len", defaultValue = "128", description = "output tokens per request (default: ${DEFAULT-VALUE})")
    int outputLen;

    @Option(names = "--num-requests", defaultValue = "100", description = "requests (default: ${DEFAULT-VALUE})")
    int numRequests;

    @Option(names = "--seed", defaultValue = "0", description = "seed of the random prompts")
    long seed;

    @Option(names = "--temperature", defaultValue = "0", description = "sampling temperature (0 = greedy)")
    double temperature;

    @Option(names = "--top-p", defaultValue = "1", description = "nucleus sampling mass, with --temperature (1 = off)")
    double topP;

    @Option(names = "--top-k", defaultValue = "0", description = "keep the k most likely tokens, with --temperature (0 = off)")
    int topK;

    @Option(names = "--max-num-seqs", defaultValue = "1024", description = "sequences per step (default: ${DEFAULT-VALUE})")
    int maxNumSeqs;

    @Option(names = "--max-num-batched-tokens", defaultValue = "8192",
            description = "tokens per step, prefill and decode (default: ${DEFAULT-VALUE})")
    int maxNumBatchedTokens;

    @Option(names = "--kv-blocks", defaultValue = "0",
            description = "KV-cache blocks; 0 = enough for max-num-seqs sequences of input + output tokens, or as many"
                    + " as fit in --gpu-memory-utilization of the GPU if fewer")
    int kvBlocks;

    @Option(names = "--gpu-memory-utilization", defaultValue = "0.9",
            description = "share of the GPU's memory for weights, activations and KV cache (default: ${DEFAULT-VALUE})")
    double gpuMemoryUtilization;

    @Option(names = "--kv-dtype", description = "KV-cache dtype (default: F32 on the CPU backend, BF16 on GPUs)")
    DType kvDtype;

    @Option(names = "--no-prefix-caching", description = "turn prefix reuse off")
    boolean noPrefixCaching;

    @Mixin
    AdmissionOptions admission;

    @Option(names = "--json", paramLabel = "FILE", description = "write the result record to FILE")
    Path json;

    @Option(names = "--progress-seconds", defaultValue = "30", paramLabel = "S",
            description = "print progress to stderr every S seconds while requests run; 0 = never (default: ${DEFAULT-VALUE})")
    int progressSeconds;

    @Option(names = "--deadline-seconds", defaultValue = "0", paramLabel = "S",
            description = "give up, with an error and no record, once the run will outlast S seconds: when, from S/2 on,"
                    + " the output tokens still wanted at the mean rate so far would end past S; 0 = never")
    double deadlineSeconds;

    @Spec CommandSpec spec;

    private long totalMemory; // of the GPU, when the backend has one
    private Backend.Memory afterRun; // device memory once the requests are done, before the engine closes; null: none

    @Override
    public Integer call() throws Exception {
        if (inputLen < 1 || outputLen < 1 || numRequests < 1) {
            throw new IllegalArgumentException("--input-len, --output-len and --num-requests must be >= 1, got "
                    + inputLen + ", " + outputLen + ", " + numRequests);
        }
        PrintWriter out = spec.commandLine().getOut();
        try (Backend backend = modelOptions.openBackend(); LoadedModel m = modelOptions.load(backend)) {
            EngineConfig config = engineConfig(m);
            int[][] prompts = prompts(m.config().vocabSize());
            var params = SamplingParams.builder().temperature(temperature).topP(topP).topK(topK).maxTokens(outputLen).ignoreEos(true)
                    .seed(temperature == 0 ? null : seed).build();
            Result r;
            try (var engine = LlmEngine.of(m, config)) {
                r = run(engine, prompts, params, progressSeconds * 1000L, new PrintWriter(System.err, true),
                        deadlineSeconds > 0 ? new Deadline(deadlineSeconds, deadlineSeconds / 2, 10) : null);
                // the pool keeps a buffer of every size the run met, so what is free is a lower bound on the headroom;
                // read before the engine's close gives the KV cache back
                afterRun = m.model().backend().memory().orElse(null);
            }
            print(out, m, backend, config, r);
            if (json != null) writeJson(m, backend, config, r);
        }
        return 0;
    }

    private EngineConfig engineConfig(LoadedModel m) {
        int len = modelOptions.maxModelLen > 0 ? modelOptions.maxModelLen : inputLen + outputLen;
        if (len < inputLen + outputLen) {
            throw new IllegalArgumentException("--max-model-len " + len + " is shorter than --input-len + --output-len = "
                    + (inputLen + outputLen));
        }
        if (len > m.config().maxPositionEmbeddings()) {
            throw new IllegalArgumentException("input + output = " + len + " tokens exceeds the model's context of "
                    + m.config().maxPositionEmbeddings());
        }
        int bs = modelOptions.blockSize;
        int perSeq = (len + bs - 1) / bs;
        DType dtype = kvDtype != null ? kvDtype : ModelOptions.cacheDtype(m);
        int blocks = kvBlocks;
        if (blocks <= 0) {
            blocks = perSeq * Math.min(maxNumSeqs, numRequests);
            var memory = m.model().backend().memory();
            if (memory.isPresent()) {
                blocks = Math.min(blocks, KvCacheSizing.blocksThatFit(m.config(), memory.get(), gpuMemoryUtilization, bs,
                        dtype, maxNumBatchedTokens, maxNumSeqs, perSeq));
                totalMemory = memory.get().totalBytes();
            }
        }
        return new EngineConfig(maxNumSeqs, maxNumBatchedTokens, bs, blocks, len, numRequests, !noPrefixCaching, dtype,
                admission.guaranteeNoEvict, admission.admissionWatermark);
    }

    private int[][] prompts(int vocab) {
        var rnd = new Random(seed);
        int[][] p = new int[numRequests][inputLen];
        for (int[] row : p) for (int i = 0; i < inputLen; i++) row[i] = rnd.nextInt(vocab);
        return p;
    }

    /** Timings of a set of requests; {@code latencyMs} is submit to last token, per request. */
    record Result(double seconds, long outputTokens, long inputTokens, int requests, double[] ttftMs, double[] tpotMs,
                  double[] latencyMs, int peakRunning, int peakBlocks, int totalBlocks, long preemptions,
                  long prefixHits, long steps, double hostMsPerStep, double hostShare) {}

    /** Submits everything, then follows each stream on its own virtual thread while sampling the engine's stats. */
    static Result run(LlmEngine engine, int[][] prompts, SamplingParams params) throws InterruptedException {
        return run(engine, prompts, params, 0, null);
    }

    /**
     * As {@link #run(LlmEngine, int[][], SamplingParams)}, printing a progress line to {@code progress} every
     * {@code progressMillis} (0: never), so that a run cut short by a time limit still says how far it got.
     */
    static Result run(LlmEngine engine, int[][] prompts, SamplingParams params, long progressMillis, PrintWriter progress)
            throws InterruptedException {
        return run(engine, prompts, params, progressMillis, progress, null);
    }

    /** {@code --deadline-seconds}: the limit, the seconds before it may stop a run, and how often it looks. */
    record Deadline(double seconds, double graceSeconds, double checkSeconds) {}

    /**
     * As above, giving up when {@code deadline} (null: none) cannot be met: from its grace on, at every check, the
     * output tokens still wanted (every request runs to its max tokens) at the mean rate since the start would end
     * past the deadline. Then every request is aborted and an {@link IllegalStateException} says how far the run
     * got. The rate is the whole run's, not a recent window's: with long prompts the output comes in waves (a
     * batch of prefills, then decodes), and a 10 s window in a prefill trough once gave up on a run that was on
     * course. The grace matters too: while the first prompts are being prefilled few tokens come out;
     * {@code --deadline-seconds} waits half the deadline.
     */
    static Result run(LlmEngine engine, int[][] prompts, SamplingParams params, long progressMillis, PrintWriter progress,
                      Deadline deadline) throws InterruptedException {
        if (deadline != null && params.maxTokens() == null) {
            throw new IllegalArgumentException("--deadline-seconds needs requests with max tokens");
        }
        int n = prompts.length;
        long[] first = new long[n], last = new long[n];
        int[] tokens = new int[n];
        var streams = new RequestStream[n];
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) streams[i] = engine.submit(new EngineRequest("bench-" + i, prompts[i], params, null));
        var threads = new ArrayList<Thread>(n);
        for (int i = 0; i < n; i++) {
            int k = i;
            threads.add(Thread.ofVirtual().start(() -> {
                try {
                    RequestOutput o;
                    while ((o = streams[k].next()) != null) {
                        long now = System.nanoTime();
                        if (tokens[k] == 0 && o.tokenIds().length > 0) first[k] = now;
                        tokens[k] += o.tokenIds().length;
                        last[k] = now;
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }));
        }
        int peakRunning = 0, peakBlocks = 0;
        long every = progressMillis > 0 && progress != null ? progressMillis * 1_000_000L : Long.MAX_VALUE;
        long nextReport = every == Long.MAX_VALUE ? Long.MAX_VALUE : t0 + every;  // no report: never (t0 + MAX would wrap)
        long checkEvery = deadline == null ? Long.MAX_VALUE : (long) (deadline.checkSeconds() * 1e9);
        long nextCheck = deadline == null ? Long.MAX_VALUE : t0 + checkEvery;
        long wanted = (long) n * (params.maxTokens() == null ? 0 : params.maxTokens());
        for (Thread t : threads) {
            while (!t.join(java.time.Duration.ofMillis(2))) {
                var s = engine.stats();
                peakRunning = Math.max(peakRunning, s.running());
                peakBlocks = Math.max(peakBlocks, s.kvBlocksUsed());
                long now = System.nanoTime();
                if (now >= nextReport) {
                    nextReport = now + every;
                    int done = 0;
                    for (Thread u : threads) if (!u.isAlive()) done++;
                    double secs = (now - t0) / 1e9;
                    progress.printf(Locale.ROOT, "[%.0f s] %d of %d requests done, %d output tokens (%.1f tok/s so far),"
                                    + " %d running, %d waiting, %d preemptions%n", secs, done, n, s.generatedTokens(),
                            s.generatedTokens() / secs, s.running(), s.waiting(), s.preemptions());
                }
                if (now >= nextCheck) {
                    double secs = (now - t0) / 1e9, rate = s.generatedTokens() / secs;
                    double projected = secs + (wanted - s.generatedTokens()) / Math.max(rate, 1e-9);
                    if (secs >= deadline.graceSeconds() && projected > deadline.seconds()) {
                        for (RequestStream st : streams) st.abort();
                        throw new IllegalStateException(String.format(Locale.ROOT, "gave up after %.1f s: %d of %d output tokens"
                                        + " at the %.1f tok/s so far would end at about %.0f s, past --deadline-seconds %s;"
                                        + " no record written", secs, s.generatedTokens(), wanted, rate,
                                projected, deadline.seconds()));
                    }
                    nextCheck = now + checkEvery;
                }
            }
        }
        long end = 0, out = 0, in = 0;
        double[] ttft = new double[n], tpot = new double[n], latency = new double[n];
        for (int i = 0; i < n; i++) {
            if (streams[i].error() != null) {
                throw new IllegalStateException("request " + i + " failed: " + streams[i].error().getMessage(), streams[i].error());
            }
            end = Math.max(end, last[i]);
            out += tokens[i];
            in += prompts[i].length;
            ttft[i] = (first[i] - t0) / 1e6;
            latency[i] = (last[i] - t0) / 1e6;
            tpot[i] = tokens[i] > 1 ? (last[i] - first[i]) / 1e6 / (tokens[i] - 1) : 0;
        }
        var s = engine.stats();
        return new Result((end - t0) / 1e9, out, in, n, ttft, tpot, latency, peakRunning, peakBlocks, s.kvBlocksTotal(),
                s.preemptions(), s.prefixHits(), s.steps(), s.steps() == 0 ? 0 : s.hostNanos() / 1e6 / s.steps(), s.hostShare());
    }

    private void print(PrintWriter out, LoadedModel m, Backend backend, EngineConfig c, Result r) {
        out.printf(Locale.ROOT, "%s, model %s on %s: %d requests of %d input + %d output tokens%n", "throughput", m.name(), backend.name(),
                r.requests(), inputLen, outputLen);
        out.printf(Locale.ROOT, "  duration        %.2f s%n", r.seconds());
        out.printf(Locale.ROOT, "  output          %.1f tok/s%n", r.outputTokens() / r.seconds());
        out.printf(Locale.ROOT, "  total           %.1f tok/s%n", (r.outputTokens() + r.inputTokens()) / r.seconds());
        out.printf(Locale.ROOT, "  requests        %.2f req/s%n", r.requests() / r.seconds());
        out.printf(Locale.ROOT, "  TTFT ms         p50 %.1f  p90 %.1f  p99 %.1f%n", pct(r.ttftMs(), 50), pct(r.ttftMs(), 90), pct(r.ttftMs(), 99));
        out.printf(Locale.ROOT, "  TPOT ms         p50 %.2f  p90 %.2f  p99 %.2f%n", pct(r.tpotMs(), 50), pct(r.tpotMs(), 90), pct(r.tpotMs(), 99));
        out.printf(Locale.ROOT, "  latency ms      p50 %.1f  p90 %.1f  p99 %.1f%n", pct(r.latencyMs(), 50), pct(r.latencyMs(), 90), pct(r.latencyMs(), 99));
        out.printf(Locale.ROOT, "  peak running    %d (max-num-seqs %d)%n", r.peakRunning(), c.maxNumSeqs());
        out.printf(Locale.ROOT, "  KV blocks used  %d of %d (block size %d), %d preemptions%n", r.peakBlocks(),
                r.totalBlocks(), c.blockSize(), r.preemptions());
        out.printf(Locale.ROOT, "  engine host     %.3f ms per step over %d steps (%.1f%% of the engine's stepping time)%n",
                r.hostMsPerStep(), r.steps(), 100 * r.hostShare());
        if (afterRun != null) {
            out.printf(Locale.ROOT, "  device memory   %.2f GiB free after the run, of %.2f GiB (the pool keeps a buffer of every size the run met: a lower bound on the headroom)%n",
                    afterRun.freeBytes() / (double) (1L << 30), afterRun.totalBytes() / (double) (1L << 30));
        }
        out.flush();
    }

    private void writeJson(LoadedModel m, Backend backend, EngineConfig c, Result r) throws IOException {
        var rec = new LinkedHashMap<String, Object>();
        rec.put("benchmark", "throughput");
        rec.put("model", m.name());
        rec.put("dtype", modelOptions.ref() instanceof ModelRef.Synthetic ? modelOptions.syntheticDtype.name()
                : String.valueOf(m.config().dtype()));
        rec.put("backend", backend.name());
        rec.put("input_len", inputLen);
        rec.put("output_len", outputLen);
        rec.put("num_requests", numRequests);
        rec.put("seed", seed);
        rec.put("temperature", temperature);
        rec.put("top_p", topP);
        rec.put("top_k", topK);
        rec.put("device_sampling", temperature > 0 && LlmEngine.deviceSamplingRequested()
                && backend.supportsSampling());
        var engine = new LinkedHashMap<String, Object>();
        engine.put("max_num_seqs", c.maxNumSeqs());
        engine.put("max_num_batched_tokens", c.maxNumBatchedTokens());
        engine.put("block_size", c.blockSize());
        engine.put("kv_blocks", c.numBlocks());
        if (totalMemory > 0) {
            engine.put("gpu_memory_utilization", gpuMemoryUtilization);
            engine.put("kv_memory_fraction",
                    (double) c.numBlocks() * KvCacheSizing.bytesPerBlock(m.config(), c.blockSize(), c.kvCacheDtype()) / totalMemory);
        }
        engine.put("kv_dtype", c.kvCacheDtype().name());
        engine.put("decode_graph_batches", ModelRunner.graphsEnabled(m.model().backend()) ? ModelRunner.graphBatches() : new int[0]);
        engine.put("max_model_len", c.maxModelLen());
        engine.put("prefix_caching", c.enablePrefixCaching());
        engine.put("scheduler_policy", c.guaranteeNoEvict() ? "guaranteed_no_evict" : "max_utilization");
        engine.put("admission_watermark", c.admissionWatermark());
        rec.put("engine", engine);
        var res = new LinkedHashMap<String, Object>();
        res.put("duration_s", r.seconds());
        res.put("output_tok_per_s", r.outputTokens() / r.seconds());
        res.put("total_tok_per_s", (r.outputTokens() + r.inputTokens()) / r.seconds());
        res.put("requests_per_s", r.requests() / r.seconds());
        res.put("output_tokens", r.outputTokens());
        res.put("ttft_ms", percentiles(r.ttftMs()));
        res.put("tpot_ms", percentiles(r.tpotMs()));
        res.put("latency_ms", percentiles(r.latencyMs()));
        res.put("peak_concurrency", r.peakRunning());
        res.put("kv_blocks_used_peak", r.peakBlocks());
        res.put("kv_blocks_total", r.totalBlocks());
        res.put("preemptions", r.preemptions());
        res.put("engine_steps", r.steps());
        res.put("engine_host_ms_per_step", r.hostMsPerStep());
        res.put("engine_host_share", r.hostShare());
        if (afterRun != null) res.put("device_free_bytes_after_run", afterRun.freeBytes());
        rec.put("results", res);
        rec.put("git_commit", gitCommit());
        rec.put("date", Instant.now().toString());
        rec.put("hardware", hardware());
        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(json.toFile(), rec);
    }

    static Map<String, Double> percentiles(double[] v) {
        var p = new LinkedHashMap<String, Double>();
        p.put("p50", pct(v, 50));
        p.put("p90", pct(v, 90));
        p.put("p99", pct(v, 99));
        p.put("mean", Arrays.stream(v).average().orElse(0));
        return p;
    }

    /** The nearest-rank percentile. */
    static double pct(double[] v, double p) {
        if (v.length == 0) return 0;
        double[] s = v.clone();
        Arrays.sort(s);
        int rank = (int) Math.ceil(p / 100 * s.length);
        return s[Math.max(0, Math.min(s.length - 1, rank - 1))];
    }

    static Map<String, Object> hardware() {
        var h = new LinkedHashMap<String, Object>();
        h.put("cpu", cpuModel());
        h.put("cores", Runtime.getRuntime().availableProcessors());
        h.put("os", System.getProperty("os.name") + " " + System.getProperty("os.arch"));
        h.put("java", Runtime.version().toString());
        String gpu = command("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader");
        if (gpu != null && !gpu.isBlank()) h.put("gpu", List.of(gpu.strip().split("\n")));
        return h;
    }

    private static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).strip();
            }
        } catch (IOException | RuntimeException e) {
            // not Linux: fall through
        }
        return System.getProperty("os.arch");
    }

    /**
     * LATHE_COMMIT when set (the GPU script sets it from the pack: the tree copied to a GPU machine need not
     * carry a matching .git), else the checkout's HEAD.
     */
    private static String gitCommit() {
        String env = System.getenv("LATHE_COMMIT");
        if (env != null && !env.isBlank() && !env.equals("unknown")) return env.strip();
        String c = command("git", "rev-parse", "HEAD");
        return c == null ? null : c.strip();
    }

    /** Standard output of a short command, or null if it cannot run or fails. */
    private static String command(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
            byte[] bytes = p.getInputStream().readAllBytes();
            if (!p.waitFor(5, TimeUnit.SECONDS) || p.exitValue() != 0) return null;
            return new String(bytes, StandardCharsets.UTF_8);
        } catch (IOException | RuntimeException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }
}
