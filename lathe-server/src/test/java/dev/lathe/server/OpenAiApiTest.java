package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.ChatMessage;
import dev.lathe.core.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OpenAiApiTest {
    private LatheServer server;
    private Http http;
    private Tokenizer tok;

    @BeforeAll
    void start() {
        server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 16)).port(0).build().start();
        http = new Http(server.port());
        tok = TestModels.model().tokenizer().orElseThrow();
    }

    @AfterAll
    void stop() {
        server.stop();
    }

    private int[] chatIds(String user) {
        return tok.encode(tok.chatTemplate().orElseThrow().render(List.of(ChatMessage.user(user)), true), false);
    }

    @Test
    void greedyChatCompletionMatchesTheGeneratorAndCountsUsage() {
        var r = http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}],
                 "temperature": 0, "max_tokens": 12, "ignore_eos": true}""");
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        JsonNode b = Http.json(r);
        int[] ids = chatIds("Hello there");
        String expected = TestModels.reference(ids, SamplingParams.builder().temperature(0).maxTokens(12).ignoreEos(true).build());
        assertThat(b.get("object").asText()).isEqualTo("chat.completion");
        assertThat(b.get("id").asText()).startsWith("chatcmpl-");
        assertThat(b.get("model").asText()).isEqualTo("tiny");
        JsonNode c = b.get("choices").get(0);
        assertThat(c.get("message").get("role").asText()).isEqualTo("assistant");
        assertThat(c.get("message").get("content").asText()).isEqualTo(expected);
        assertThat(c.get("finish_reason").asText()).isEqualTo("length");
        assertThat(b.get("usage").get("prompt_tokens").asInt()).isEqualTo(ids.length);
        assertThat(b.get("usage").get("completion_tokens").asInt()).isEqualTo(12);
        assertThat(b.get("usage").get("total_tokens").asInt()).isEqualTo(ids.length + 12);
    }

    @Test
    void streamedChatDeliversTheSameTextInChunksThenUsageThenDone() {
        String req = """
                {"model": "tiny", "messages": [{"role": "user", "content": "Tell me"}], "temperature": 0,
                 "max_completion_tokens": 10, "ignore_eos": true, "stream": %s %s}""";
        String whole = Http.json(http.post("/v1/chat/completions", req.formatted("false", "")))
                .get("choices").get(0).get("message").get("content").asText();
        var r = http.post("/v1/chat/completions", req.formatted("true", ", \"stream_options\": {\"include_usage\": true}"));
        assertThat(r.statusCode()).isEqualTo(200);
        assertThat(r.headers().firstValue("content-type").orElse("")).startsWith("text/event-stream");
        List<String> events = Http.events(r.body());
        assertThat(events.getLast()).isEqualTo("[DONE]");
        var text = new StringBuilder();
        String finish = null;
        for (int i = 0; i < events.size() - 2; i++) {
            JsonNode chunk = Http.json(events.get(i));
            assertThat(chunk.get("object").asText()).isEqualTo("chat.completion.chunk");
            assertThat(chunk.has("usage") && chunk.get("usage").isNull()).isTrue();
            JsonNode choice = chunk.get("choices").get(0);
            if (i == 0) assertThat(choice.get("delta").get("role").asText()).isEqualTo("assistant");
            if (choice.get("delta").has("content")) text.append(choice.get("delta").get("content").asText());
            if (!choice.get("finish_reason").isNull()) finish = choice.get("finish_reason").asText();
        }
        assertThat(text.toString()).isEqualTo(whole);
        assertThat(finish).isEqualTo("length");
        JsonNode usage = Http.json(events.get(events.size() - 2));
        assertThat(usage.get("choices")).isEmpty();
        assertThat(usage.get("usage").get("completion_tokens").asInt()).isEqualTo(10);
    }

    @Test
    void completionEndsBeforeTheStopString() {
        String req = """
                {"model": "tiny", "prompt": "The beginning", "temperature": 0, "max_tokens": 24, "ignore_eos": true %s}""";
        String full = Http.json(http.post("/v1/completions", req.formatted(""))).get("choices").get(0).get("text").asText();
        assertThat(full.length()).as(full).isGreaterThanOrEqualTo(6);
        String stop = full.substring(full.length() / 2, full.length() / 2 + 2);
        var r = Http.json(http.post("/v1/completions", req.formatted(", \"stop\": [" + Json.MAPPER.valueToTree(stop) + "]")));
        JsonNode c = r.get("choices").get(0);
        assertThat(c.get("text").asText()).isEqualTo(full.substring(0, full.indexOf(stop)));
        assertThat(c.get("finish_reason").asText()).isEqualTo("stop");
        assertThat(r.get("object").asText()).isEqualTo("text_completion");
    }

    @Test
    void seededSamplesOfTokenIdPromptsRepeatAndReportLogprobs() {
        String req = """
                {"model": "tiny", "prompt": [0, 5, 6, 7], "n": 2, "seed": 7, "temperature": 1, "max_tokens": 4,
                 "ignore_eos": true, "logprobs": 2}""";
        JsonNode a = Http.json(http.post("/v1/completions", req));
        JsonNode b = Http.json(http.post("/v1/completions", req));
        assertThat(a.get("choices")).hasSize(2);
        for (int i = 0; i < 2; i++) {
            JsonNode c = a.get("choices").get(i);
            assertThat(c.get("index").asInt()).isEqualTo(i);
            assertThat(c.get("text").asText()).isEqualTo(b.get("choices").get(i).get("text").asText());
            JsonNode lp = c.get("logprobs");
            assertThat(lp.get("tokens")).hasSize(4);
            assertThat(String.join("", toStrings(lp.get("tokens")))).isEqualTo(c.get("text").asText());
            for (JsonNode v : lp.get("token_logprobs")) assertThat(v.asDouble()).isLessThanOrEqualTo(0);
            for (JsonNode top : lp.get("top_logprobs")) assertThat(top.size()).isBetween(1, 2);
        }
        assertThat(a.get("usage").get("completion_tokens").asInt()).isEqualTo(8);
        assertThat(a.get("usage").get("prompt_tokens").asInt()).isEqualTo(4);
    }

    @Test
    void greedyChatLogprobsPutTheChosenTokenFirst() {
        JsonNode r = Http.json(http.post("/v1/chat/completions", """
                {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 3,
                 "ignore_eos": true, "logprobs": true, "top_logprobs": 3}"""));
        JsonNode content = r.get("choices").get(0).get("logprobs").get("content");
        assertThat(content).hasSize(3);
        for (JsonNode e : content) {
            assertThat(e.get("top_logprobs")).hasSize(3);
            assertThat(e.get("logprob").asDouble()).isEqualTo(e.get("top_logprobs").get(0).get("logprob").asDouble());
            assertThat(e.get("token").asText()).isEqualTo(e.get("top_logprobs").get(0).get("token").asText());
            assertThat(e.get("bytes").isArray()).isTrue();
        }
    }

    @Test
    void streamedCompletionsEndWithDone() {
        var r = http.post("/v1/completions", """
                {"model": "tiny", "prompt": "Once", "max_tokens": 5, "ignore_eos": true, "stream": true}""");
        List<String> events = Http.events(r.body());
        assertThat(events.getLast()).isEqualTo("[DONE]");
        var finishes = new ArrayList<String>();
        for (String e : events.subList(0, events.size() - 1)) {
            JsonNode c = Http.json(e).get("choices").get(0);
            if (!c.get("finish_reason").isNull()) finishes.add(c.get("finish_reason").asText());
        }
        assertThat(finishes).containsExactly("length");
    }

    @Test
    void concurrentRequestsAllGetTheirOwnAnswer() throws Exception {
        String[] prompts = {"one", "two words", "three little words", "four", "five and more", "six"};
        try (var pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            List<java.util.concurrent.Future<String>> answers = new ArrayList<>();
            for (String p : prompts) {
                answers.add(pool.submit(() -> Http.json(http.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \""
                        + p + "\", \"max_tokens\": 6, \"temperature\": 0, \"ignore_eos\": true}"))
                        .get("choices").get(0).get("text").asText()));
            }
            for (int i = 0; i < prompts.length; i++) {
                assertThat(answers.get(i).get()).isEqualTo(TestModels.reference(tok.encode(prompts[i], true),
                        SamplingParams.builder().temperature(0).maxTokens(6).ignoreEos(true).build()));
            }
        }
    }

    @Test
    void modelsAreListed() {
        JsonNode r = Http.json(http.get("/v1/models"));
        assertThat(r.get("object").asText()).isEqualTo("list");
        assertThat(r.get("data").get(0).get("id").asText()).isEqualTo("tiny");
        assertThat(r.get("data").get(0).get("object").asText()).isEqualTo("model");
    }

    private static List<String> toStrings(JsonNode arr) {
        List<String> out = new ArrayList<>();
        arr.forEach(n -> out.add(n.asText()));
        return out;
    }
}
