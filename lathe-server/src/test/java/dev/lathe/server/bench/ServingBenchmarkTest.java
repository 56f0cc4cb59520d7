package dev.lathe.server.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lathe.server.LatheServer;
import dev.lathe.server.EngineFixture;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class ServingBenchmarkTest {
    @Test
    void aConcurrencySweepAgainstOurServerCountsEveryTokenAndOrdersPercentiles() throws Exception {
        try (var server = LatheServer.builder().model("tiny", EngineFixture.engine("tiny", 64)).apiKey("k")
                .port(0).build().start()) {
            var base = new ServingBenchmark.Config("http://127.0.0.1:" + server.port(), "tiny", "k", 6, 12, 5,
                    Double.POSITIVE_INFINITY, 1, 42, 200, new ServingBenchmark.Slo(null, null, 60_000.0));
            List<ServingBenchmark.Report> reports = new ServingBenchmark().sweepConcurrency(base, List.of(1, 3));
            assertThat(reports).hasSize(2);
            for (var r : reports) {
                assertThat(r.failed()).as(r.errors().toString()).isZero();
                assertThat(r.completed()).isEqualTo(6);
                assertThat(r.outputTokens()).isEqualTo(6 * 5);
                assertThat(r.inputTokens()).isEqualTo(6 * 12);
                assertThat(r.ttftMs().p50()).isPositive().isLessThanOrEqualTo(r.ttftMs().p99());
                assertThat(r.ttftMs().p99()).isLessThanOrEqualTo(r.ttftMs().max());
                assertThat(r.e2eMs().p50()).isGreaterThanOrEqualTo(r.ttftMs().p50());
                assertThat(r.tpotMs().mean()).isPositive();
                assertThat(r.outputThroughput()).isCloseTo(r.outputTokens() / r.durationSeconds(), org.assertj.core.data.Percentage.withPercentage(0.01));
                assertThat(r.goodput()).isCloseTo(r.requestThroughput(), org.assertj.core.data.Percentage.withPercentage(0.01));
            }
            var json = new ObjectMapper().readTree(ServingBenchmark.toJson(reports));
            assertThat(json.get(1).get("concurrency").asInt()).isEqualTo(3);
            assertThat(json.get(0).get("output_tokens").asInt()).isEqualTo(30);
            String html = LatencyChart.html("tiny", reports);
            assertThat(html).contains("<svg").contains("<polyline").contains("<td>3</td>");
        }
    }

    @Test
    void requestsThatFailAreCountedWithTheirError() throws Exception {
        try (var server = LatheServer.builder().model("tiny", EngineFixture.engine("tiny", 64)).port(0).build().start()) {
            var c = new ServingBenchmark.Config("http://127.0.0.1:" + server.port(), "absent", null, 2, 4, 2,
                    10.0, 0, 1, 100, ServingBenchmark.Slo.NONE);
            var r = new ServingBenchmark().run(c);
            assertThat(r.completed()).isZero();
            assertThat(r.failed()).isEqualTo(2);
            assertThat(r.errors().getFirst()).contains("404").contains("absent");
        }
    }

    @Test
    void promptsPerConcurrencyScalesEachLevelsCount() throws Exception {
        try (var server = LatheServer.builder().model("tiny", EngineFixture.engine("tiny", 64)).port(0).build().start()) {
            var base = new ServingBenchmark.Config("http://127.0.0.1:" + server.port(), "tiny", null, 50, 8, 3,
                    Double.POSITIVE_INFINITY, 1, 7, 200, ServingBenchmark.Slo.NONE);
            List<ServingBenchmark.Report> reports = new ServingBenchmark().sweepConcurrency(base, List.of(1, 4), 2);
            assertThat(reports).extracting(ServingBenchmark.Report::completed).containsExactly(2, 8);
            assertThat(reports).extracting(ServingBenchmark.Report::outputTokens).containsExactly(2L * 3, 8L * 3);
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> new ServingBenchmark().sweepConcurrency(base, List.of(1), -1))
                    .hasMessageContaining("prompts per concurrency must be >= 0");
        }
    }
}
