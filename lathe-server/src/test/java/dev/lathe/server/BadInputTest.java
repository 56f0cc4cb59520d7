package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

import static org.assertj.core.api.Assertions.assertThat;

/** Each bad request gets a 4xx in its protocol's error shape, and the next good request is served. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class BadInputTest {
    private static final String GOOD_CHAT = """
            {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}""";
    private LatheServer server;
    private Http http;

    @BeforeAll
    void start() {
        server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 16)).port(0).maxBodyBytes(64 * 1024)
                .build().start();
        http = new Http(server.port());
    }

    @AfterAll
    void stop() {
        server.stop();
    }

    @AfterEach
    void serverStillServes() {
        var r = http.post("/v1/chat/completions", GOOD_CHAT);
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        assertThat(Http.json(r).get("choices").get(0).get("message").get("content").isTextual()).isTrue();
    }

    /** Asserts OpenAI's error body: {"error": {"message", "type", "param", "code"}} and returns it. */
    private static JsonNode openAiError(HttpResponse<String> r, int status) {
        assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
        assertThat(r.headers().firstValue("content-type").orElse("")).startsWith("application/json");
        JsonNode e = Http.json(r).get("error");
        assertThat(e).as(r.body()).isNotNull();
        assertThat(e.get("message").asText()).isNotBlank();
        assertThat(e.has("type") && e.has("param") && e.has("code")).as(r.body()).isTrue();
        return e;
    }

    @Test
    void malformedJsonIsA400() {
        JsonNode e = openAiError(http.post("/v1/chat/completions", "{\"model\": \"tiny\", \"messages\": ["), 400);
        assertThat(e.get("type").asText()).isEqualTo("invalid_request_error");
        assertThat(e.get("message").asText()).contains("not valid JSON");
    }

    @Test
    void aBodyThatIsNotAnObjectIsA400() {
        openAiError(http.post("/v1/completions", "[1, 2]"), 400);
    }

    @Test
    void aWrongTypeNamesTheField() {
        JsonNode e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": "ten"}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("max_tokens");
        assertThat(e.get("message").asText()).contains("integer").contains("string");
        e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "temperature": 7}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("temperature");
        e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stop": 5}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("stop");
    }

    @Test
    void anUnknownModelIsA404() {
        JsonNode e = openAiError(http.post("/v1/chat/completions", """
                {"model": "gpt-9", "messages": [{"role": "user", "content": "Hi"}]}"""), 404);
        assertThat(e.get("code").asText()).isEqualTo("model_not_found");
        assertThat(e.get("message").asText()).contains("gpt-9");
    }

    @Test
    void emptyMessagesAreA400() {
        JsonNode e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": []}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("messages");
        e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"content": "no role"}]}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("messages[0].role");
    }

    @Test
    void maxTokensBeyondTheContextIsA400() {
        JsonNode e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100000}"""), 400);
        assertThat(e.get("code").asText()).isEqualTo("context_length_exceeded");
        assertThat(e.get("message").asText()).contains(Integer.toString(TestModels.MAX_MODEL_LEN));
    }

    @Test
    void aPromptBeyondTheContextIsA400() {
        String longPrompt = "word ".repeat(TestModels.MAX_MODEL_LEN * 2);
        JsonNode e = openAiError(http.post("/v1/completions",
                "{\"model\": \"tiny\", \"prompt\": \"" + longPrompt + "\", \"max_tokens\": 1}"), 400);
        assertThat(e.get("code").asText()).isEqualTo("context_length_exceeded");
        assertThat(e.get("param").asText()).isEqualTo("prompt");
    }

    @Test
    void invalidUtf8IsA400() {
        byte[] head = "{\"model\": \"tiny\", \"prompt\": \"".getBytes(StandardCharsets.UTF_8);
        byte[] tail = "\"}".getBytes(StandardCharsets.UTF_8);
        byte[] body = new byte[head.length + 2 + tail.length];
        System.arraycopy(head, 0, body, 0, head.length);
        body[head.length] = (byte) 0xC3; // a lead byte followed by a non-continuation byte
        body[head.length + 1] = (byte) 0x28;
        System.arraycopy(tail, 0, body, head.length + 2, tail.length);
        JsonNode e = openAiError(http.postBytes("/v1/completions", body), 400);
        assertThat(e.get("message").asText()).contains("UTF-8");
    }

    @Test
    void anOversizedBodyIsA413() {
        String big = "{\"model\": \"tiny\", \"prompt\": \"" + "a".repeat(200 * 1024) + "\"}";
        JsonNode e = openAiError(http.post("/v1/completions", big), 413);
        assertThat(e.get("message").asText()).contains(Integer.toString(64 * 1024));
    }

    @Test
    void featuresNotYetServedAreRefusedNotIgnored() {
        JsonNode e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
                 "tools": [{"type": "function", "function": {"name": "f"}}]}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("tools");
        e = openAiError(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("response_format");
    }

    @Test
    void tokenIdsOutsideTheVocabularyAreA400() {
        JsonNode e = openAiError(http.post("/v1/completions", """
                {"model": "tiny", "prompt": [1, 999999]}"""), 400);
        assertThat(e.get("param").asText()).isEqualTo("prompt");
    }

    @Test
    void kserveErrorsUseItsOwnShape() {
        var r = http.post("/v2/models/nope/generate", "{\"text_input\": \"hi\"}");
        assertThat(r.statusCode()).isEqualTo(404);
        assertThat(Http.json(r).get("error").asText()).contains("nope");
        r = http.post("/v2/models/tiny/generate", "{\"text_input\": ");
        assertThat(r.statusCode()).isEqualTo(400);
        assertThat(Http.json(r).get("error").isTextual()).isTrue();
        r = http.post("/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"text_input\", \"datatype\": \"BYTES\", \"shape\": [1], \"data\": [3]}]}");
        assertThat(r.statusCode()).isEqualTo(400);
        assertThat(Http.json(r).get("error").asText()).contains("text_input");
        r = http.post("/v2/models/tiny/generate", "{\"text_input\": \"hi\", \"max_tokens\": 100000}");
        assertThat(r.statusCode()).isEqualTo(400);
        assertThat(Http.json(r).get("error").asText()).contains("maximum context length");
    }

    @Test
    void unknownRoutesAre404InTheProtocolShape() {
        var r = http.get("/v1/nothing");
        assertThat(r.statusCode()).isEqualTo(404);
        assertThat(Http.json(r).get("error").get("message").asText()).contains("/v1/nothing");
        r = http.get("/v2/nothing");
        assertThat(r.statusCode()).isEqualTo(404);
        assertThat(Http.json(r).get("error").isTextual()).isTrue();
    }
}
