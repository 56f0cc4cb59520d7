package dev.lathe.cli;

import dev.lathe.server.bench.LatencyChart;
import dev.lathe.server.bench.ServingBenchmark;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code lathe bench serving}: load against any OpenAI-compatible server (ours or another) at a
 * Poisson request rate or a fixed concurrency, or a sweep of either; TTFT, TPOT, ITL and end-to-end
 * percentiles, throughput and goodput; a JSON record and an HTML chart of latency against throughput.
 */
@Command(name = "serving", description = "Online serving load against an OpenAI-compatible URL: latency percentiles, throughput, goodput.")
final class BenchServingCommand implements Callable<Integer> {
    @Option(names = "--url", defaultValue = "http://127.0.0.1:8000", description = "server base URL (default: ${DEFAULT-VALUE})") String url;
    @Option(names = "--model", required = true, description = "model name as the server knows it") String model;
    @Option(names = "--api-key", description = "bearer token (default: $LATHE_API_KEY)") String apiKey;
    @Option(names = "--num-prompts", defaultValue = "200") int numPrompts;
    @Option(names = "--input-len", defaultValue = "1024") int inputLen;
    @Option(names = "--output-len", defaultValue = "128") int outputLen;
    @Option(names = "--request-rate", defaultValue = "inf", description = "requests per second, Poisson arrivals; inf = all at once (default)") String requestRate;
    @Option(names = "--concurrency", split = ",", description = "most requests in flight; a list sweeps (e.g. 1,2,4,8)") List<Integer> concurrency;
    @Option(names = "--prompts-per-concurrency", defaultValue = "0",
            description = "in a concurrency sweep, send N x the level's concurrency prompts at each level instead of --num-prompts")
    int promptsPerConcurrency;
    @Option(names = "--rates", split = ",", description = "a sweep of request rates instead (e.g. 1,2,4,inf)") List<String> rates;
    @Option(names = "--prompt-vocab", defaultValue = "1000", description = "prompt token ids are drawn below this (default: ${DEFAULT-VALUE})") int promptVocab;
    @Option(names = "--seed", defaultValue = "0") long seed;
    @Option(names = "--goodput-ttft-ms", description = "TTFT target for goodput") Double ttftMs;
    @Option(names = "--goodput-tpot-ms", description = "TPOT target for goodput") Double tpotMs;
    @Option(names = "--goodput-e2e-ms", description = "end-to-end target for goodput") Double e2eMs;
    @Option(names = "--json", description = "write the reports here as a JSON array") Path json;
    @Option(names = "--chart", description = "write an HTML chart of latency against throughput here") Path chart;

    @Override
    public Integer call() throws IOException, InterruptedException {
        String key = apiKey != null ? apiKey : System.getenv("LATHE_API_KEY");
        var base = new ServingBenchmark.Config(url, model, key, numPrompts, inputLen, outputLen, rate(requestRate), 0, seed,
                promptVocab, new ServingBenchmark.Slo(ttftMs, tpotMs, e2eMs));
        var bench = new ServingBenchmark();
        List<ServingBenchmark.Report> reports = new ArrayList<>();
        if (promptsPerConcurrency != 0 && (concurrency == null || concurrency.isEmpty() || (rates != null && !rates.isEmpty()))) {
            throw new IllegalArgumentException("--prompts-per-concurrency " + promptsPerConcurrency
                    + " needs a concurrency sweep (--concurrency 1,4,...) and no --rates");
        }
        if (rates != null && !rates.isEmpty()) {
            var c = base.withConcurrency(concurrency == null || concurrency.isEmpty() ? 0 : concurrency.getFirst());
            for (String r : rates) reports.add(report(bench.run(c.withRequestRate(rate(r)))));
        } else if (concurrency != null && !concurrency.isEmpty()) {
            for (int c : concurrency) reports.addAll(bench.sweepConcurrency(base, List.of(c), promptsPerConcurrency).stream()
                    .map(BenchServingCommand::report).toList());
        } else {
            reports.add(report(bench.run(base)));
        }
        if (json != null) Files.writeString(json, ServingBenchmark.toJson(reports));
        if (chart != null) Files.writeString(chart, LatencyChart.html(model + ": " + inputLen + " in / " + outputLen + " out", reports));
        return reports.stream().allMatch(r -> r.completed() > 0) ? 0 : 1;
    }

    private static ServingBenchmark.Report report(ServingBenchmark.Report r) {
        System.out.println(r.summary());
        if (r.failed() > 0) System.out.println("  first error: " + r.errors().getFirst());
        return r;
    }

    private static double rate(String s) {
        if (s.equalsIgnoreCase("inf")) return Double.POSITIVE_INFINITY;
        try {
            return Double.parseDouble(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("a request rate must be a number or 'inf', got '" + s + "'");
        }
    }
}
