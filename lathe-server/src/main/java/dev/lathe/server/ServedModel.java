package dev.lathe.server;

import dev.lathe.core.engine.Engine;
import dev.lathe.core.engine.EngineOverloadedException;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.generate.ContextLengthException;
import dev.lathe.core.tokenizer.ChatMessage;
import dev.lathe.core.tokenizer.ChatTemplateException;
import dev.lathe.core.tokenizer.Tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * One model as the server exposes it: its engine plus the front end's half of the work, tokenising
 * prompts, rendering chat templates and checking lengths against the context before submitting.
 */
public final class ServedModel {
    private final String name;
    private final Engine engine;
    private final long created = System.currentTimeMillis() / 1000;

    public ServedModel(String name, Engine engine) {
        if (name == null || name.isBlank()) throw new IllegalArgumentException("a served model needs a non-blank name");
        this.name = name;
        this.engine = engine;
    }

    public String name() { return name; }

    public Engine engine() { return engine; }

    public long created() { return created; }

    public int maxModelLen() { return engine.maxModelLen(); }

    public int vocabSize() { return engine.modelConfig().vocabSize(); }

    private Tokenizer tokenizer(String what) {
        return engine.tokenizer().orElseThrow(() -> ApiException.badRequest("The model `" + name
                + "` has no tokenizer, so it cannot take " + what + "; send the prompt as an array of token ids"
                + " to /v1/completions instead.", "prompt"));
    }

    public int[] encodeChat(List<ChatMessage> messages) {
        Tokenizer tok = tokenizer("chat messages");
        var template = tok.chatTemplate().orElseThrow(() -> ApiException.badRequest("The model `" + name
                + "` has no chat template; use /v1/completions with a plain prompt.", "messages"));
        String rendered;
        try {
            rendered = template.render(messages, true);
        } catch (ChatTemplateException e) {
            throw ApiException.badRequest("The chat template of `" + name + "` rejected the messages: "
                    + e.getMessage(), "messages");
        }
        return tok.encode(rendered, false);
    }

    public int[] encodeText(String text) {
        return tokenizer("a text prompt").encode(text, true);
    }

    /** The text of one token as shown in logprobs; its id when the model has no tokenizer. */
    public String tokenText(int id) {
        return engine.tokenizer().map(t -> t.decode(new int[]{id}, false)).orElse(Integer.toString(id));
    }

    public static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    /**
     * Rejects a prompt that leaves no room in the context, or a {@code maxTokens} that would run past it.
     * {@code param} names the field the prompt came in.
     */
    public void checkContext(int promptTokens, Integer maxTokens, String param) {
        int limit = maxModelLen();
        if (promptTokens >= limit || (maxTokens != null && promptTokens + (long) maxTokens > limit)) {
            int asked = maxTokens == null ? promptTokens + 1 : promptTokens + maxTokens;
            throw ApiException.badRequest("This model's maximum context length is " + limit + " tokens. However, you"
                    + " requested " + asked + " tokens (" + promptTokens + " in the " + param + ", "
                    + (maxTokens == null ? "at least 1" : Integer.toString(maxTokens)) + " in the completion)."
                    + " Please reduce the length of the " + param + " or the completion.",
                    maxTokens != null && promptTokens < limit ? "max_tokens" : param, "context_length_exceeded");
        }
    }

    /** Submits to the engine, turning its refusals into API errors. */
    public RequestStream submit(EngineRequest request) {
        try {
            return engine.submit(request);
        } catch (EngineOverloadedException e) {
            throw ApiException.overloaded("The server is overloaded: " + e.getMessage() + ".", e.retryAfterSeconds());
        } catch (ContextLengthException e) {
            throw ApiException.badRequest(e.getMessage(), "max_tokens", "context_length_exceeded");
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest(e.getMessage(), null);
        } catch (IllegalStateException e) {
            throw ApiException.unavailable("The model `" + name + "` is not taking requests: " + e.getMessage());
        }
    }
}
