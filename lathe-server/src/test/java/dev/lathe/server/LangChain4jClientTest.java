package dev.lathe.server;

import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.ChatMessage;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** A conversation through a published OpenAI client library, with nothing of ours in between. */
class LangChain4jClientTest {
    @Test
    void aTwoTurnConversationThroughLangChain4j() throws Exception {
        try (var server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 4)).apiKey("k-123").port(0)
                .build().start()) {
            var model = OpenAiChatModel.builder().baseUrl("http://127.0.0.1:" + server.port() + "/v1").apiKey("k-123")
                    .modelName("tiny").temperature(0.0).maxTokens(8).build();
            var system = SystemMessage.from("You are terse.");
            var first = UserMessage.from("Hello");
            ChatResponse r1 = model.chat(system, first);
            String a1 = r1.aiMessage().text();
            var tok = TestModels.model().tokenizer().orElseThrow();
            var params = SamplingParams.builder().temperature(0).maxTokens(8).build();
            List<ChatMessage> conv = List.of(ChatMessage.system("You are terse."), ChatMessage.user("Hello"));
            assertThat(a1).isEqualTo(TestModels.reference(
                    tok.encode(tok.chatTemplate().orElseThrow().render(conv, true), false), params));
            assertThat(r1.tokenUsage().inputTokenCount()).isPositive();

            ChatResponse r2 = model.chat(system, first, AiMessage.from(a1), UserMessage.from("And then?"));
            List<ChatMessage> conv2 = List.of(ChatMessage.system("You are terse."), ChatMessage.user("Hello"),
                    ChatMessage.assistant(a1), ChatMessage.user("And then?"));
            assertThat(r2.aiMessage().text()).isEqualTo(TestModels.reference(
                    tok.encode(tok.chatTemplate().orElseThrow().render(conv2, true), false), params));
            assertThat(r2.tokenUsage().inputTokenCount()).isGreaterThan(r1.tokenUsage().inputTokenCount());

            // the same first turn, streamed through the library's SSE client
            var streaming = OpenAiStreamingChatModel.builder().baseUrl("http://127.0.0.1:" + server.port() + "/v1")
                    .apiKey("k-123").modelName("tiny").temperature(0.0).maxTokens(8).build();
            var done = new CompletableFuture<ChatResponse>();
            var partials = new StringBuilder();
            streaming.chat(List.of(system, first), new StreamingChatResponseHandler() {
                @Override public void onPartialResponse(String partial) { partials.append(partial); }
                @Override public void onCompleteResponse(ChatResponse response) { done.complete(response); }
                @Override public void onError(Throwable error) { done.completeExceptionally(error); }
            });
            ChatResponse streamed = done.get(20, TimeUnit.SECONDS);
            assertThat(partials.toString()).isEqualTo(a1);
            assertThat(streamed.aiMessage().text()).isEqualTo(a1);
        }
    }
}
