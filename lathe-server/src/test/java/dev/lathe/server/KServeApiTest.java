package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class KServeApiTest {
    private LatheServer server;
    private Http http;
    private Tokenizer tok;

    @BeforeAll
    void start() {
        server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 16))
                .model("other", TestModels.engine("other", 16)).port(0).build().start();
        http = new Http(server.port());
        tok = TestModels.model().tokenizer().orElseThrow();
    }

    @AfterAll
    void stop() {
        server.stop();
    }

    private String greedy(String prompt, int maxTokens) {
        return TestModels.reference(tok.encode(prompt, true),
                SamplingParams.builder().temperature(0).maxTokens(maxTokens).ignoreEos(true).build());
    }

    @Test
    void healthAndMetadataAnswer() {
        assertThat(http.get("/v2/health/live").statusCode()).isEqualTo(200);
        assertThat(http.get("/v2/health/ready").statusCode()).isEqualTo(200);
        assertThat(http.get("/v2/models/tiny/ready").statusCode()).isEqualTo(200);
        assertThat(http.get("/v2/models/nope/ready").statusCode()).isEqualTo(404);
        JsonNode meta = Http.json(http.get("/v2"));
        assertThat(meta.get("name").asText()).isEqualTo("lathe");
        assertThat(meta.get("extensions").toString()).contains("generate");
        JsonNode model = Http.json(http.get("/v2/models/other"));
        assertThat(model.get("name").asText()).isEqualTo("other");
        assertThat(model.get("inputs").get(0).get("name").asText()).isEqualTo("text_input");
        assertThat(model.get("inputs").get(0).get("datatype").asText()).isEqualTo("BYTES");
        assertThat(model.get("outputs").get(0).get("name").asText()).isEqualTo("text_output");
    }

    @Test
    void inferTakesTensorsAsTheTensorRtLlmBackendDoes() {
        var r = http.post("/v2/models/tiny/infer", """
                {"id": "42", "inputs": [
                  {"name": "text_input", "datatype": "BYTES", "shape": [2, 1], "data": [["Hello"], ["Once upon"]]},
                  {"name": "max_tokens", "datatype": "INT32", "shape": [1, 1], "data": [[6]]},
                  {"name": "temperature", "datatype": "FP32", "shape": [1, 1], "data": [[0.0]]}],
                 "parameters": {"ignore_eos": true}}""");
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        JsonNode b = Http.json(r);
        assertThat(b.get("model_name").asText()).isEqualTo("tiny");
        assertThat(b.get("id").asText()).isEqualTo("42");
        JsonNode out = b.get("outputs").get(0);
        assertThat(out.get("name").asText()).isEqualTo("text_output");
        assertThat(out.get("datatype").asText()).isEqualTo("BYTES");
        assertThat(out.get("shape").toString()).isEqualTo("[2,1]");
        assertThat(out.get("data").get(0).asText()).isEqualTo(greedy("Hello", 6));
        assertThat(out.get("data").get(1).asText()).isEqualTo(greedy("Once upon", 6));
    }

    @Test
    void generateAndGenerateStreamAgree() {
        String req = """
                {"text_input": "The river", "max_tokens": 8, "temperature": 0, "parameters": {"ignore_eos": true}}""";
        JsonNode g = Http.json(http.post("/v2/models/other/generate", req));
        assertThat(g.get("model_name").asText()).isEqualTo("other");
        assertThat(g.get("text_output").asText()).isEqualTo(greedy("The river", 8));
        var r = http.post("/v2/models/other/generate_stream", req);
        assertThat(r.statusCode()).isEqualTo(200);
        List<String> events = Http.events(r.body());
        var sb = new StringBuilder();
        for (String e : events) sb.append(Http.json(e).get("text_output").asText());
        assertThat(sb.toString()).isEqualTo(g.get("text_output").asText());
        assertThat(Http.json(events.getLast()).get("finish_reason").asText()).isEqualTo("length");
    }

    @Test
    void versionedRoutesServeVersionOne() {
        var r = http.post("/v2/models/tiny/versions/1/generate", "{\"text_input\": \"Hi\", \"max_tokens\": 3, \"temperature\": 0, \"ignore_eos\": true}");
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        assertThat(Http.json(r).get("text_output").asText()).isEqualTo(greedy("Hi", 3));
        r = http.get("/v2/models/tiny/versions/7");
        assertThat(r.statusCode()).isEqualTo(404);
        assertThat(Http.json(r).get("error").asText()).contains("version");
    }

    @Test
    void beamSearchIsRefused() {
        var r = http.post("/v2/models/tiny/generate", "{\"text_input\": \"x\", \"beam_width\": 4}");
        assertThat(r.statusCode()).isEqualTo(400);
        assertThat(Http.json(r).get("error").asText()).contains("beam_width");
    }
}
