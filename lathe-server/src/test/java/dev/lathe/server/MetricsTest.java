package dev.lathe.server;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class MetricsTest {
    @Test
    void metricsCountRequestsByStatusAndRecordLatencies() throws InterruptedException {
        try (var server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 4)).port(0).build().start()) {
            var http = new Http(server.port());
            for (int i = 0; i < 2; i++) {
                assertThat(http.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"Hi\", \"max_tokens\": 3,"
                        + " \"ignore_eos\": true}").statusCode()).isEqualTo(200);
            }
            assertThat(http.post("/v1/completions", "{\"model\": \"tiny\"}").statusCode()).isEqualTo(400);
            // engine gauges and counters are a snapshot published after each engine step, and the request
            // counters and histograms are recorded as each handler finishes; both may come a moment after the
            // client has its last byte: wait (at most 5 s) until every counted value is in, then check each
            List<String> counted = List.of(
                    "lathe_requests_running{model=\"tiny\"} 0.0",
                    "lathe_http_requests_total{endpoint=\"completions\",status=\"200\"} 2.0",
                    "lathe_http_requests_total{endpoint=\"completions\",status=\"400\"} 1.0",
                    "lathe_time_to_first_token_seconds_count{model=\"tiny\"} 2",
                    "lathe_time_per_output_token_seconds_count{model=\"tiny\"} 2",
                    "lathe_generated_tokens_total{model=\"tiny\"} 6.0");
            String m = http.get("/metrics").body();
            for (long end = System.nanoTime() + 5_000_000_000L; System.nanoTime() < end; ) {
                String now = m;
                if (counted.stream().allMatch(now::contains)) break;
                Thread.sleep(5);
                m = http.get("/metrics").body();
            }
            for (String c : counted) assertThat(m).contains(c);
            assertThat(m).contains("lathe_e2e_request_latency_seconds_bucket{model=\"tiny\",le=");
            assertThat(m).contains("lathe_generated_tokens_total{model=\"tiny\"} 6.0");
            assertThat(m).contains("lathe_queue_waiting{model=\"tiny\"} 0.0");
            assertThat(m).contains("lathe_kv_cache_usage{model=\"tiny\"}");
            assertThat(m).contains("lathe_prefix_cache_hit_rate{model=\"tiny\"}");
            assertThat(m).contains("lathe_requests_running{model=\"tiny\"}");
            assertThat(http.get("/health").body()).contains("ok");
        }
    }
}
