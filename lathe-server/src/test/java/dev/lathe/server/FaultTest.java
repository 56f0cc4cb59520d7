package dev.lathe.server;

import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

class FaultTest {
    @Test
    void aClientThatDisconnectsMidStreamAbortsItsRequest() throws Exception {
        var engine = new StubEngine(false, 5);
        try (var server = LatheServer.builder().model("stub", engine).port(0).build().start()) {
            String body = "{\"model\": \"stub\", \"prompt\": [1, 2], \"max_tokens\": 200, \"stream\": true}";
            try (var socket = new Socket("127.0.0.1", server.port())) {
                OutputStream out = socket.getOutputStream();
                out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        + "Content-Length: " + body.getBytes(StandardCharsets.UTF_8).length + "\r\n\r\n" + body)
                        .getBytes(StandardCharsets.UTF_8));
                out.flush();
                var in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
                String line;
                while ((line = in.readLine()) != null && !line.contains("data: ")) { }
                assertThat(line).as("a first event arrived").isNotNull();
                assertThat(engine.aborted.getCount()).isEqualTo(1);
            }
            assertThat(engine.aborted.await(5, TimeUnit.SECONDS)).as("the stream was aborted").isTrue();
            // and the server goes on serving
            assertThat(new Http(server.port()).get("/v1/models").statusCode()).isEqualTo(200);
        }
    }

    @Test
    void aRequestThatFailsInsideTheEngineFailsAlone() {
        var engine = new StubEngine(false, 1);
        engine.failOnFirstToken = 7;
        try (var server = LatheServer.builder().model("stub", engine).port(0).build().start()) {
            var http = new Http(server.port());
            var bad = http.post("/v1/completions", "{\"model\": \"stub\", \"prompt\": [7, 1], \"max_tokens\": 3}");
            assertThat(bad.statusCode()).isEqualTo(500);
            assertThat(Http.json(bad).get("error").get("message").asText()).contains("NaN logits");
            assertThat(Http.json(bad).get("error").get("type").asText()).isEqualTo("server_error");
            var streamed = http.post("/v1/completions", "{\"model\": \"stub\", \"prompt\": [7], \"max_tokens\": 3, \"stream\": true}");
            assertThat(streamed.statusCode()).isEqualTo(200);
            assertThat(streamed.body()).contains("NaN logits").endsWith("data: [DONE]\n\n");
            var good = http.post("/v1/completions", "{\"model\": \"stub\", \"prompt\": [1, 7], \"max_tokens\": 3}");
            assertThat(good.statusCode()).isEqualTo(200);
            assertThat(Http.json(good).get("choices").get(0).get("text").asText()).isEqualTo("xxx");
        }
    }

    @Test
    void aFullQueueIsA429WithRetryAfter() {
        try (var server = LatheServer.builder().model("stub", new StubEngine(true, 1)).port(0).build().start()) {
            var http = new Http(server.port());
            var r = http.post("/v1/completions", "{\"model\": \"stub\", \"prompt\": [1, 2]}");
            assertThat(r.statusCode()).isEqualTo(429);
            assertThat(r.headers().firstValue("retry-after")).hasValue("3");
            assertThat(Http.json(r).get("error").get("type").asText()).isEqualTo("rate_limit_error");
            r = http.post("/v2/models/stub/generate", "{\"text_input\": \"hi\"}");
            assertThat(r.statusCode()).isEqualTo(429);
            assertThat(r.headers().firstValue("retry-after")).hasValue("3");
            assertThat(Http.json(r).get("error").isTextual()).isTrue();
        }
    }

    @Test
    void theEngineRefusesPastItsQueueLimit() throws Exception {
        try (var engine = TestModels.engine("tiny", 1);
             var server = LatheServer.builder().model("tiny", engine).port(0).closeEngines(false).build().start()) {
            var params = dev.lathe.core.sampling.SamplingParams.builder().maxTokens(200).ignoreEos(true).build();
            // one runs, one waits; the third is refused
            var a = engine.submit(new dev.lathe.core.engine.EngineRequest("a", new int[]{1, 2}, params, null));
            Thread.sleep(50);
            var b = engine.submit(new dev.lathe.core.engine.EngineRequest("b", new int[]{1, 2}, params, null));
            var r = new Http(server.port()).post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": [1, 2]}");
            assertThat(r.statusCode()).as(r.body()).isEqualTo(429);
            assertThat(r.headers().firstValue("retry-after")).isPresent();
            a.abort();
            b.abort();
        }
    }

    @Test
    void theApiKeyGuardsTheApiButNotHealthOrMetrics() {
        try (var server = LatheServer.builder().model("stub", new StubEngine(false, 1)).apiKey("s3cret").port(0)
                .build().start()) {
            var anon = new Http(server.port());
            var r = anon.get("/v1/models");
            assertThat(r.statusCode()).isEqualTo(401);
            assertThat(Http.json(r).get("error").get("code").asText()).isEqualTo("invalid_api_key");
            assertThat(new Http(server.port(), "wrong").get("/v1/models").statusCode()).isEqualTo(401);
            assertThat(anon.get("/v2/models/stub").statusCode()).isEqualTo(401);
            assertThat(Http.json(anon.get("/v2/models/stub")).get("error").isTextual()).isTrue();
            assertThat(new Http(server.port(), "s3cret").get("/v1/models").statusCode()).isEqualTo(200);
            assertThat(anon.get("/health").statusCode()).isEqualTo(200);
            assertThat(anon.get("/metrics").statusCode()).isEqualTo(200);
        }
    }

    @Test
    void stoppingAbortsWhatIsStillRunningWhenTheGracePeriodEnds() throws Exception {
        var engine = new StubEngine(false, 200); // 50 tokens take 10 s, longer than the grace period
        var server = LatheServer.builder().model("stub", engine).port(0).gracePeriodMillis(3000).build().start();
        var http = new Http(server.port());
        var result = new java.util.concurrent.CompletableFuture<Integer>();
        Thread.startVirtualThread(() -> {
            try {
                result.complete(http.post("/v1/completions", "{\"model\": \"stub\", \"prompt\": [1], \"max_tokens\": 50}")
                        .statusCode());
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        });
        while (engine.submitted.get() == 0) Thread.sleep(5);
        long t0 = System.nanoTime();
        server.stop();
        // when the grace period is over the server aborts the request, and the client still gets its
        // answer (what was generated so far)
        assertThat(result.get(10, TimeUnit.SECONDS)).isEqualTo(200);
        assertThat(engine.aborted.getCount()).isZero();
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertThat(seconds).isBetween(2.5, 8.0);
    }
}
