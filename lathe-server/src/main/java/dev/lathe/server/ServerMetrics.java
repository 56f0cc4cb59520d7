package dev.lathe.server;

import dev.lathe.core.engine.Engine;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

import java.time.Duration;

/**
 * Prometheus metrics: request counts by endpoint and status, latency histograms per model (time to
 * first token, time per output token, end to end), and the engine's own state read from
 * {@link Engine#stats()} at scrape time (queue, running, KV-cache use, prefix-cache hits, tokens).
 */
public final class ServerMetrics {
    private static final Duration[] LATENCY_BUCKETS = buckets(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
            10, 30, 60, 120);
    private static final Duration[] TPOT_BUCKETS = buckets(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
            0.15, 0.2, 0.3, 0.5, 1);

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

    public void registerModel(ServedModel m) {
        Engine e = m.engine();
        String name = m.name();
        Gauge.builder("lathe.queue.waiting", e, x -> x.stats().waiting()).tag("model", name)
                .description("Requests waiting to be scheduled").register(registry);
        Gauge.builder("lathe.requests.running", e, x -> x.stats().running()).tag("model", name)
                .description("Requests holding KV-cache blocks").register(registry);
        Gauge.builder("lathe.kv_cache.usage", e, x -> x.stats().kvUsage()).tag("model", name)
                .description("Fraction of KV-cache blocks in use (0..1)").register(registry);
        Gauge.builder("lathe.prefix_cache.hit_rate", e, x -> x.stats().prefixHitRate()).tag("model", name)
                .description("Prompt tokens found in the prefix cache over prompt tokens looked up, since start")
                .register(registry);
        FunctionCounter.builder("lathe.generated.tokens", e, x -> x.stats().generatedTokens()).tag("model", name)
                .description("Tokens sampled since start").register(registry);
        FunctionCounter.builder("lathe.preemptions", e, x -> x.stats().preemptions()).tag("model", name)
                .description("Requests preempted since start").register(registry);
        FunctionCounter.builder("lathe.engine.steps", e, x -> x.stats().steps()).tag("model", name)
                .description("Model steps run since start").register(registry);
    }

    /** Counts one finished HTTP request. */
    public void countRequest(String endpoint, int status) {
        Counter.builder("lathe.http.requests").tag("endpoint", endpoint).tag("status", Integer.toString(status))
                .description("HTTP requests by endpoint and status").register(registry).increment();
    }

    /** Latencies of one generation: time to first token, mean time per later token, end to end. */
    public void recordGeneration(String model, long ttftNanos, long e2eNanos, int outputTokens, int promptTokens) {
        if (ttftNanos > 0) {
            timer("lathe.time_to_first_token", "Time from request to first output token", model, LATENCY_BUCKETS)
                    .record(Duration.ofNanos(ttftNanos));
        }
        if (outputTokens > 1 && ttftNanos > 0) {
            timer("lathe.time_per_output_token", "Mean time per output token after the first", model, TPOT_BUCKETS)
                    .record(Duration.ofNanos((e2eNanos - ttftNanos) / (outputTokens - 1)));
        }
        timer("lathe.e2e_request_latency", "Time from request to last output token", model, LATENCY_BUCKETS)
                .record(Duration.ofNanos(e2eNanos));
        DistributionSummary.builder("lathe.request.prompt_tokens").tag("model", model).register(registry)
                .record(promptTokens);
        DistributionSummary.builder("lathe.request.generation_tokens").tag("model", model).register(registry)
                .record(outputTokens);
    }

    private Timer timer(String name, String description, String model, Duration[] buckets) {
        return Timer.builder(name).description(description).tag("model", model).serviceLevelObjectives(buckets)
                .register(registry);
    }

    /** The Prometheus text exposition of every meter. */
    public String scrape() {
        return registry.scrape();
    }

    private static Duration[] buckets(double... seconds) {
        Duration[] out = new Duration[seconds.length];
        for (int i = 0; i < seconds.length; i++) out[i] = Duration.ofNanos((long) (seconds[i] * 1e9));
        return out;
    }
}
