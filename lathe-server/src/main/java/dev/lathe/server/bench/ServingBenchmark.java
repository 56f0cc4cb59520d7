package dev.lathe.server.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.stream.Stream;

/**
 * A load generator for any OpenAI-compatible server: streamed {@code /v1/completions} requests of
 * fixed input and output lengths, sent at a Poisson request rate and/or with at most a fixed number in
 * flight. Measures per request the time to first token (TTFT), the mean time per output token after
 * the first (TPOT), every inter-token latency (ITL) and the end-to-end latency, and reports their
 * percentiles, throughput and goodput (requests per second that meet every latency target).
 *
 * <p>Prompts are token-id arrays (random ids below {@code promptVocab}) so the input length is exact
 * on any server that takes token-id prompts; {@code ignore_eos} makes the output length exact.
 */
public final class ServingBenchmark {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * One benchmark point.
     *
     * @param requestRate requests per second (Poisson arrivals); infinite = all at once
     * @param concurrency most requests in flight; 0 = no limit
     * @param slo         latency targets for goodput; a null target is not checked
     */
    public record Config(String baseUrl, String model, String apiKey, int numPrompts, int inputLen, int outputLen,
                         double requestRate, int concurrency, long seed, int promptVocab, Slo slo) {
        public Config {
            if (numPrompts < 1 || inputLen < 1 || outputLen < 1) {
                throw new IllegalArgumentException("numPrompts, inputLen and outputLen must be >= 1, got " + numPrompts
                        + ", " + inputLen + ", " + outputLen);
            }
            if (!(requestRate > 0)) throw new IllegalArgumentException("request rate must be > 0 (or infinite), got " + requestRate);
            if (concurrency < 0) throw new IllegalArgumentException("concurrency must be >= 0, got " + concurrency);
            if (promptVocab < 2) throw new IllegalArgumentException("promptVocab must be >= 2, got " + promptVocab);
            baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
        }

        public Config withConcurrency(int c) {
            return new Config(baseUrl, model, apiKey, numPrompts, inputLen, outputLen, requestRate, c, seed, promptVocab, slo);
        }

        public Config withNumPrompts(int n) {
            return new Config(baseUrl, model, apiKey, n, inputLen, outputLen, requestRate, concurrency, seed, promptVocab, slo);
        }

        public Config withRequestRate(double r) {
            return new Config(baseUrl, model, apiKey, numPrompts, inputLen, outputLen, r, concurrency, seed, promptVocab, slo);
        }
    }

    /** Latency targets in milliseconds for goodput. */
    public record Slo(Double ttftMs, Double tpotMs, Double e2eMs) {
        public static final Slo NONE = new Slo(null, null, null);

        boolean met(RequestResult r) {
            return (ttftMs == null || r.ttftSeconds() * 1000 <= ttftMs)
                    && (tpotMs == null || r.tpotSeconds() * 1000 <= tpotMs)
                    && (e2eMs == null || r.e2eSeconds() * 1000 <= e2eMs);
        }
    }

    /** One request's measurements; {@code error} is null when it succeeded. */
    public record RequestResult(double ttftSeconds, double e2eSeconds, int outputTokens, List<Double> itlSeconds,
                                String error) {
        public double tpotSeconds() {
            return outputTokens > 1 ? (e2eSeconds - ttftSeconds) / (outputTokens - 1) : 0;
        }
    }

    /** Percentiles of one latency, in milliseconds. */
    public record Percentiles(double mean, double p50, double p90, double p99, double max) {
        static Percentiles of(List<Double> seconds) {
            if (seconds.isEmpty()) return new Percentiles(0, 0, 0, 0, 0);
            List<Double> s = new ArrayList<>(seconds);
            Collections.sort(s);
            double sum = 0;
            for (double x : s) sum += x;
            return new Percentiles(sum / s.size() * 1000, pct(s, 50) * 1000, pct(s, 90) * 1000, pct(s, 99) * 1000,
                    s.getLast() * 1000);
        }

        /** Linear interpolation between closest ranks, as numpy.percentile does by default. */
        private static double pct(List<Double> sorted, double p) {
            double rank = p / 100 * (sorted.size() - 1);
            int lo = (int) Math.floor(rank), hi = (int) Math.ceil(rank);
            return sorted.get(lo) + (sorted.get(hi) - sorted.get(lo)) * (rank - lo);
        }
    }

    /** The outcome of one benchmark point. */
    public record Report(Config config, int completed, int failed, double durationSeconds, long inputTokens,
                         long outputTokens, double requestThroughput, double outputThroughput, double totalThroughput,
                         double goodput, Percentiles ttftMs, Percentiles tpotMs, Percentiles itlMs, Percentiles e2eMs,
                         List<String> errors) {
        public ObjectNode toJson() {
            ObjectNode o = JSON.createObjectNode();
            o.put("model", config.model());
            o.put("num_prompts", config.numPrompts());
            o.put("input_len", config.inputLen());
            o.put("output_len", config.outputLen());
            if (Double.isInfinite(config.requestRate())) o.put("request_rate", "inf");
            else o.put("request_rate", config.requestRate());
            o.put("concurrency", config.concurrency());
            o.put("completed", completed);
            o.put("failed", failed);
            o.put("duration_s", durationSeconds);
            o.put("input_tokens", inputTokens);
            o.put("output_tokens", outputTokens);
            o.put("request_throughput", requestThroughput);
            o.put("output_throughput", outputThroughput);
            o.put("total_token_throughput", totalThroughput);
            o.put("goodput", goodput);
            o.set("ttft_ms", JSON.valueToTree(ttftMs));
            o.set("tpot_ms", JSON.valueToTree(tpotMs));
            o.set("itl_ms", JSON.valueToTree(itlMs));
            o.set("e2e_ms", JSON.valueToTree(e2eMs));
            ArrayNode errs = o.putArray("errors");
            errors.stream().limit(10).forEach(errs::add);
            return o;
        }

        /** A human-readable summary. */
        public String summary() {
            return String.format("""
                    concurrency %s, rate %s req/s: %d ok, %d failed in %.2f s
                      throughput  %.2f req/s, %.1f output tok/s, %.1f total tok/s, goodput %.2f req/s
                      TTFT ms     mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f
                      TPOT ms     mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f
                      ITL ms      mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f
                      E2E ms      mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f""",
                    config.concurrency() == 0 ? "unlimited" : Integer.toString(config.concurrency()),
                    Double.isInfinite(config.requestRate()) ? "inf" : String.format("%.2f", config.requestRate()),
                    completed, failed, durationSeconds, requestThroughput, outputThroughput, totalThroughput, goodput,
                    ttftMs.mean(), ttftMs.p50(), ttftMs.p90(), ttftMs.p99(),
                    tpotMs.mean(), tpotMs.p50(), tpotMs.p90(), tpotMs.p99(),
                    itlMs.mean(), itlMs.p50(), itlMs.p90(), itlMs.p99(),
                    e2eMs.mean(), e2eMs.p50(), e2eMs.p90(), e2eMs.p99());
        }
    }

    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    /** Runs one benchmark point. */
    public Report run(Config c) throws InterruptedException {
        var random = new Random(c.seed());
        List<int[]> prompts = new ArrayList<>();
        for (int i = 0; i < c.numPrompts(); i++) {
            int[] ids = new int[c.inputLen()];
            for (int j = 0; j < ids.length; j++) ids[j] = 1 + random.nextInt(c.promptVocab() - 1);
            prompts.add(ids);
        }
        Semaphore slots = c.concurrency() > 0 ? new Semaphore(c.concurrency()) : null;
        List<Future<RequestResult>> futures = new ArrayList<>();
        long t0 = System.nanoTime();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            double next = 0; // seconds after t0 at which the next request may start
            for (int[] prompt : prompts) {
                if (!Double.isInfinite(c.requestRate())) {
                    long wait = (long) (next * 1e9) - (System.nanoTime() - t0);
                    if (wait > 0) Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                    next += -Math.log(1 - random.nextDouble()) / c.requestRate(); // exponential gaps: Poisson arrivals
                }
                if (slots != null) slots.acquire();
                futures.add(pool.submit(() -> {
                    try {
                        return send(c, prompt);
                    } finally {
                        if (slots != null) slots.release();
                    }
                }));
            }
        }
        double duration = (System.nanoTime() - t0) / 1e9;
        List<RequestResult> ok = new ArrayList<>();
        List<String> errors = new ArrayList<>();
        for (var f : futures) {
            RequestResult r;
            try {
                r = f.get();
            } catch (java.util.concurrent.ExecutionException e) {
                r = new RequestResult(0, 0, 0, List.of(), e.getCause().toString());
            }
            if (r.error() == null) ok.add(r);
            else errors.add(r.error());
        }
        long out = 0;
        int good = 0;
        List<Double> ttft = new ArrayList<>(), tpot = new ArrayList<>(), itl = new ArrayList<>(), e2e = new ArrayList<>();
        for (RequestResult r : ok) {
            out += r.outputTokens();
            ttft.add(r.ttftSeconds());
            if (r.outputTokens() > 1) tpot.add(r.tpotSeconds());
            itl.addAll(r.itlSeconds());
            e2e.add(r.e2eSeconds());
            if (c.slo().met(r)) good++;
        }
        long in = (long) ok.size() * c.inputLen();
        return new Report(c, ok.size(), errors.size(), duration, in, out, ok.size() / duration, out / duration,
                (in + out) / duration, good / duration, Percentiles.of(ttft), Percentiles.of(tpot), Percentiles.of(itl),
                Percentiles.of(e2e), errors);
    }

    /** Runs one point per concurrency (with the config's request rate). */
    public List<Report> sweepConcurrency(Config base, List<Integer> concurrencies) throws InterruptedException {
        return sweepConcurrency(base, concurrencies, 0);
    }

    /**
     * As {@link #sweepConcurrency(Config, List)}; when {@code promptsPerConcurrency} is above 0, each level sends
     * that many prompts per request in flight ({@code promptsPerConcurrency * c}) instead of the config's
     * numPrompts, so that every level runs about as many rounds (a sweep from 1 to 256 at one count is either
     * long at 1 or short at 256).
     */
    public List<Report> sweepConcurrency(Config base, List<Integer> concurrencies, int promptsPerConcurrency)
            throws InterruptedException {
        if (promptsPerConcurrency < 0) {
            throw new IllegalArgumentException("prompts per concurrency must be >= 0 (0 = the config's count), got "
                    + promptsPerConcurrency);
        }
        List<Report> out = new ArrayList<>();
        for (int c : concurrencies) {
            Config level = base.withConcurrency(c);
            if (promptsPerConcurrency > 0) level = level.withNumPrompts(Math.multiplyExact(promptsPerConcurrency, Math.max(1, c)));
            out.add(run(level));
        }
        return out;
    }

    /** Runs one point per request rate (with the config's concurrency limit). */
    public List<Report> sweepRate(Config base, List<Double> rates) throws InterruptedException {
        List<Report> out = new ArrayList<>();
        for (double r : rates) out.add(run(base.withRequestRate(r)));
        return out;
    }

    private RequestResult send(Config c, int[] prompt) {
        ObjectNode body = JSON.createObjectNode();
        body.put("model", c.model());
        ArrayNode p = body.putArray("prompt");
        for (int id : prompt) p.add(id);
        body.put("max_tokens", c.outputLen());
        body.put("temperature", 0.0);
        body.put("ignore_eos", true);
        body.put("stream", true);
        body.putObject("stream_options").put("include_usage", true);
        var req = HttpRequest.newBuilder(URI.create(c.baseUrl() + "/v1/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()));
        if (c.apiKey() != null) req.header("Authorization", "Bearer " + c.apiKey());
        long start = System.nanoTime();
        try {
            HttpResponse<Stream<String>> res = client.send(req.build(), HttpResponse.BodyHandlers.ofLines());
            if (res.statusCode() != 200) {
                String text = String.join("\n", res.body().toList());
                return new RequestResult(0, 0, 0, List.of(), "HTTP " + res.statusCode() + ": " + text);
            }
            long first = 0, last = 0;
            int chunks = 0;
            Integer usageTokens = null;
            List<Double> itl = new ArrayList<>();
            var lines = res.body().iterator();
            while (lines.hasNext()) {
                String line = lines.next();
                if (!line.startsWith("data:")) continue;
                String data = line.substring(5).strip();
                if (data.equals("[DONE]")) break;
                JsonNode chunk = JSON.readTree(data);
                if (chunk.hasNonNull("usage")) usageTokens = chunk.get("usage").path("completion_tokens").asInt();
                JsonNode choices = chunk.path("choices");
                if (choices.isEmpty() || choices.get(0).path("text").asText("").isEmpty()) continue;
                long now = System.nanoTime();
                if (first == 0) first = now;
                else itl.add((now - last) / 1e9);
                last = now;
                chunks++;
            }
            long end = System.nanoTime();
            if (first == 0) return new RequestResult(0, 0, 0, List.of(), "the stream carried no text");
            return new RequestResult((first - start) / 1e9, (end - start) / 1e9, usageTokens != null ? usageTokens : chunks,
                    itl, null);
        } catch (IOException e) {
            return new RequestResult(0, 0, 0, List.of(), e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new RequestResult(0, 0, 0, List.of(), "interrupted");
        }
    }

    /** Reports as one JSON array. */
    public static String toJson(List<Report> reports) {
        ArrayNode a = JSON.createArrayNode();
        reports.forEach(r -> a.add(r.toJson()));
        try {
            return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(a);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
