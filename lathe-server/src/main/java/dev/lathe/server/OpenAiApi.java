package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.RequestOutput;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.Logprobs;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.ChatMessage;
import io.helidon.http.HeaderNames;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The OpenAI API: {@code POST /v1/chat/completions}, {@code POST /v1/completions}, {@code GET /v1/models}.
 * Field names, types and the error body follow OpenAI's API reference; sampling extras of the engine
 * ({@code top_k}, {@code min_p}, {@code repetition_penalty}, {@code ignore_eos}, {@code min_tokens},
 * {@code skip_special_tokens}, {@code include_stop_str_in_output}, {@code stop_token_ids}) are accepted
 * as extra fields, as vLLM does.
 */
final class OpenAiApi {
    private final LatheServer server;

    OpenAiApi(LatheServer server) {
        this.server = server;
    }

    void models(ServerRequest req, ServerResponse res) {
        ArrayNode data = Json.array();
        for (ServedModel m : server.models()) {
            ObjectNode o = data.addObject();
            o.put("id", m.name());
            o.put("object", "model");
            o.put("created", m.created());
            o.put("owned_by", "lathe");
            o.put("max_model_len", m.maxModelLen());
        }
        ObjectNode body = Json.object();
        body.put("object", "list");
        body.set("data", data);
        LatheServer.sendJson(res, 200, body);
    }

    void model(ServerRequest req, ServerResponse res) {
        String name = req.path().pathParameters().get("model");
        ServedModel m = server.model(name);
        ObjectNode o = Json.object();
        o.put("id", m.name());
        o.put("object", "model");
        o.put("created", m.created());
        o.put("owned_by", "lathe");
        LatheServer.sendJson(res, 200, o);
    }

    // ---------------------------------------------------------------- chat

    void chat(ServerRequest req, ServerResponse res) {
        ObjectNode body = server.readJson(req);
        ServedModel model = server.model(Json.string(body, "model", null));
        List<ChatMessage> messages = messages(body);
        rejectUnsupported(body);
        boolean logprobs = Boolean.TRUE.equals(Json.bool(body, "logprobs", false));
        Integer topLogprobs = Json.integer(body, "top_logprobs", null);
        if (topLogprobs != null && !logprobs) {
            throw ApiException.badRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
        }
        if (topLogprobs != null && (topLogprobs < 0 || topLogprobs > SamplingParams.MAX_LOGPROBS)) {
            throw ApiException.badRequest("'top_logprobs' must be between 0 and " + SamplingParams.MAX_LOGPROBS
                    + ", got " + topLogprobs + ".", "top_logprobs");
        }
        Integer maxTokens = Json.integer(body, "max_completion_tokens", Json.integer(body, "max_tokens", null));
        String maxParam = Json.present(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        SamplingParams params = samplingParams(body, model, maxTokens, maxParam,
                logprobs ? (topLogprobs == null ? 0 : topLogprobs) : null);
        int[] prompt = model.encodeChat(messages);
        model.checkContext(prompt.length, maxTokens, "messages");
        boolean stream = Boolean.TRUE.equals(Json.bool(body, "stream", false));
        boolean includeUsage = includeUsage(body, stream);
        String id = "chatcmpl-" + UUID.randomUUID().toString().replace("-", "");
        long created = System.currentTimeMillis() / 1000;
        long start = System.nanoTime();
        RequestStream rs = model.submit(new EngineRequest(id, prompt, params, cacheSalt(body)));
        var gen = new Generation(model, server, rs, start, params.n(), prompt.length);
        if (!stream) {
            gen.run(d -> { });
            ObjectNode out = Json.object();
            out.put("id", id);
            out.put("object", "chat.completion");
            out.put("created", created);
            out.put("model", model.name());
            ArrayNode choices = out.putArray("choices");
            for (int i = 0; i < gen.samples().size(); i++) {
                Generation.Sample s = gen.samples().get(i);
                ObjectNode c = choices.addObject();
                c.put("index", i);
                ObjectNode msg = c.putObject("message");
                msg.put("role", "assistant");
                msg.put("content", s.text.toString());
                msg.putNull("refusal");
                if (logprobs) {
                    c.putObject("logprobs").set("content", chatLogprobs(model, s.logprobs));
                } else {
                    c.putNull("logprobs");
                }
                putFinish(c, s.finishReason);
            }
            out.set("usage", usage(gen.promptTokens(), gen.completionTokens(), gen.cachedTokens()));
            out.putNull("system_fingerprint");
            LatheServer.sendJson(res, 200, out);
            return;
        }
        try (var sse = new SseStream(res)) {
            boolean[] started = new boolean[params.n()];
            try {
                gen.run(d -> {
                    // a delta whose text is held back (half a character, a possible stop string) says nothing yet
                    if (started[d.index()] && isEmpty(d) && !(logprobs && d.logprobs() != null)) return;
                    ObjectNode chunk = chunkHeader(id, "chat.completion.chunk", created, model.name());
                    ObjectNode c = chunk.putArray("choices").addObject();
                    c.put("index", d.index());
                    ObjectNode delta = c.putObject("delta");
                    if (!started[d.index()]) {
                        delta.put("role", "assistant");
                        started[d.index()] = true;
                    }
                    if (d.text() != null && (!d.text().isEmpty() || !d.finished())) delta.put("content", d.text());
                    if (logprobs && d.logprobs() != null) {
                        c.putObject("logprobs").set("content", chatLogprobs(model, d.logprobs()));
                    } else {
                        c.putNull("logprobs");
                    }
                    putFinish(c, d.finishReason());
                    if (includeUsage) chunk.putNull("usage");
                    sse.send(chunk);
                });
                if (includeUsage) {
                    ObjectNode last = chunkHeader(id, "chat.completion.chunk", created, model.name());
                    last.putArray("choices");
                    last.set("usage", usage(gen.promptTokens(), gen.completionTokens(), gen.cachedTokens()));
                    sse.send(last);
                }
            } catch (SseStream.ClientGoneException e) {
                throw e;
            } catch (RuntimeException e) {
                sse.send(streamError(e)); // the status line is long gone: say it in the stream, as vLLM does
            }
            sse.sendRaw("[DONE]");
        } catch (SseStream.ClientGoneException e) {
            server.log().info("client went away during {}; request aborted", id);
        }
    }

    /** Features this server does not have yet: a clear 400 rather than an answer that ignores them. */
    private static void rejectUnsupported(ObjectNode body) {
        ArrayNode tools = Json.arrayField(body, "tools");
        if (tools != null && !tools.isEmpty()) {
            throw ApiException.badRequest("'tools' (function calling) is not supported by this server yet; leave it out.", "tools");
        }
        ObjectNode format = Json.objectField(body, "response_format");
        if (format != null && !"text".equals(Json.string(format, "type", "text"))) {
            throw ApiException.badRequest("'response_format' of type '" + Json.string(format, "type", null)
                    + "' is not supported by this server yet; only 'text' is.", "response_format");
        }
    }

    private static List<ChatMessage> messages(ObjectNode body) {
        ArrayNode arr = Json.arrayField(body, "messages");
        if (arr == null) throw ApiException.badRequest("'messages' is required: an array of {role, content} objects.", "messages");
        if (arr.isEmpty()) {
            throw ApiException.badRequest("'messages' must hold at least one message, got an empty array.", "messages");
        }
        List<ChatMessage> out = new ArrayList<>();
        for (int i = 0; i < arr.size(); i++) {
            JsonNode m = arr.get(i);
            String where = "messages[" + i + "]";
            if (!m.isObject()) throw ApiException.badRequest("'" + where + "' must be an object, got " + Json.typeName(m) + ".", where);
            String role = Json.string(m, "role", null);
            if (role == null) throw ApiException.badRequest("'" + where + ".role' is required.", where + ".role");
            if (!List.of("system", "developer", "user", "assistant", "tool").contains(role)) {
                throw ApiException.badRequest("'" + where + ".role' must be one of system, developer, user, assistant,"
                        + " tool; got '" + role + "'.", where + ".role");
            }
            JsonNode content = m.get("content");
            String text;
            if (content == null || content.isNull()) {
                text = "";
            } else if (content.isTextual()) {
                text = content.asText();
            } else if (content.isArray()) {
                var sb = new StringBuilder();
                for (int p = 0; p < content.size(); p++) {
                    JsonNode part = content.get(p);
                    String partWhere = where + ".content[" + p + "]";
                    String type = part.isObject() ? Json.string(part, "type", null) : null;
                    if (!"text".equals(type)) {
                        throw ApiException.badRequest("'" + partWhere + "' must be a {\"type\": \"text\", \"text\": ...}"
                                + " part; this server takes text only.", partWhere);
                    }
                    sb.append(Json.requiredString(part, "text"));
                }
                text = sb.toString();
            } else {
                throw ApiException.badRequest("'" + where + ".content' must be a string or an array of text parts, got "
                        + Json.typeName(content) + ".", where + ".content");
            }
            out.add(new ChatMessage(role.equals("developer") ? "system" : role, text));
        }
        return out;
    }

    private static ArrayNode chatLogprobs(ServedModel model, List<Logprobs.TokenLogprobs> lps) {
        ArrayNode content = Json.array();
        for (Logprobs.TokenLogprobs lp : lps) {
            ObjectNode e = content.addObject();
            putToken(e, model, lp.token(), lp.logprob());
            ArrayNode top = e.putArray("top_logprobs");
            for (int k = 0; k < lp.topIds().length; k++) putToken(top.addObject(), model, lp.topIds()[k], lp.topLogprobs()[k]);
        }
        return content;
    }

    private static void putToken(ObjectNode e, ServedModel model, int id, float logprob) {
        String text = model.tokenText(id);
        e.put("token", text);
        e.put("logprob", Float.isInfinite(logprob) ? -9999f : logprob);
        ArrayNode bytes = e.putArray("bytes");
        for (byte b : ServedModel.utf8(text)) bytes.add(b & 0xff);
    }

    // ---------------------------------------------------------------- completions

    void completions(ServerRequest req, ServerResponse res) {
        ObjectNode body = server.readJson(req);
        ServedModel model = server.model(Json.string(body, "model", null));
        List<int[]> prompts = prompts(body, model);
        if (Boolean.TRUE.equals(Json.bool(body, "echo", false))) {
            throw ApiException.badRequest("'echo' is not supported by this server; leave it out or set it to false.", "echo");
        }
        if (Json.present(body, "suffix")) {
            throw ApiException.badRequest("'suffix' is not supported by this server; leave it out.", "suffix");
        }
        Integer logprobs = Json.integer(body, "logprobs", null);
        if (logprobs != null && (logprobs < 0 || logprobs > 5)) {
            throw ApiException.badRequest("'logprobs' must be between 0 and 5, got " + logprobs + ".", "logprobs");
        }
        Integer maxTokens = Json.integer(body, "max_tokens", 16); // OpenAI's default for completions
        SamplingParams params = samplingParams(body, model, maxTokens, "max_tokens", logprobs);
        for (int[] p : prompts) model.checkContext(p.length, maxTokens, "prompt");
        boolean stream = Boolean.TRUE.equals(Json.bool(body, "stream", false));
        boolean includeUsage = includeUsage(body, stream);
        String id = "cmpl-" + UUID.randomUUID().toString().replace("-", "");
        long created = System.currentTimeMillis() / 1000;
        int n = params.n();
        // prompts run one after another; choice index = prompt index * n + sample index, as OpenAI numbers them
        List<Generation> gens = new ArrayList<>();
        SseStream sse = null;
        try {
            int promptTokens = 0, completionTokens = 0, cached = 0;
            for (int p = 0; p < prompts.size(); p++) {
                int[] prompt = prompts.get(p);
                long start = System.nanoTime();
                RequestStream rs = model.submit(new EngineRequest(prompts.size() == 1 ? id : id + "-" + p, prompt,
                        params, cacheSalt(body)));
                var gen = new Generation(model, server, rs, start, n, prompt.length);
                gens.add(gen);
                if (stream && sse == null) sse = new SseStream(res);
                final SseStream out = sse;
                final int base = p * n;
                gen.run(d -> {
                    if (out == null || (isEmpty(d) && !(logprobs != null && d.logprobs() != null))) return;
                    ObjectNode chunk = chunkHeader(id, "text_completion", created, model.name());
                    ObjectNode c = chunk.putArray("choices").addObject();
                    c.put("index", base + d.index());
                    c.put("text", d.text() == null ? "" : d.text());
                    if (logprobs != null && d.logprobs() != null) {
                        c.set("logprobs", completionLogprobs(model, d.logprobs(), 0));
                    } else {
                        c.putNull("logprobs");
                    }
                    putFinish(c, d.finishReason());
                    if (includeUsage) chunk.putNull("usage");
                    out.send(chunk);
                });
                promptTokens += gen.promptTokens();
                completionTokens += gen.completionTokens();
                cached += gen.cachedTokens();
            }
            if (stream) {
                if (includeUsage) {
                    ObjectNode last = chunkHeader(id, "text_completion", created, model.name());
                    last.putArray("choices");
                    last.set("usage", usage(promptTokens, completionTokens, cached));
                    sse.send(last);
                }
                sse.sendRaw("[DONE]");
                return;
            }
            ObjectNode out = Json.object();
            out.put("id", id);
            out.put("object", "text_completion");
            out.put("created", created);
            out.put("model", model.name());
            ArrayNode choices = out.putArray("choices");
            for (int p = 0; p < gens.size(); p++) {
                for (int i = 0; i < n; i++) {
                    Generation.Sample s = gens.get(p).samples().get(i);
                    ObjectNode c = choices.addObject();
                    c.put("text", s.text.toString());
                    c.put("index", p * n + i);
                    if (logprobs != null) {
                        c.set("logprobs", completionLogprobs(model, s.logprobs, 0));
                    } else {
                        c.putNull("logprobs");
                    }
                    putFinish(c, s.finishReason);
                }
            }
            out.set("usage", usage(promptTokens, completionTokens, cached));
            out.putNull("system_fingerprint");
            LatheServer.sendJson(res, 200, out);
        } catch (SseStream.ClientGoneException e) {
            server.log().info("client went away during {}; request aborted", id);
        } catch (RuntimeException e) {
            if (sse == null) throw e;
            try {
                sse.send(streamError(e)); // the status line is long gone: say it in the stream, as vLLM does
                sse.sendRaw("[DONE]");
            } catch (SseStream.ClientGoneException gone) {
                server.log().info("client went away during {}; request aborted", id);
            }
        } finally {
            if (sse != null) sse.close();
        }
    }

    private static List<int[]> prompts(ObjectNode body, ServedModel model) {
        JsonNode p = body.get("prompt");
        if (p == null || p.isNull()) throw ApiException.badRequest("'prompt' is required: a string, an array of strings,"
                + " an array of token ids or an array of such arrays.", "prompt");
        List<int[]> out = new ArrayList<>();
        if (p.isTextual()) {
            out.add(model.encodeText(p.asText()));
        } else if (p.isArray() && !p.isEmpty() && p.get(0).isIntegralNumber()) {
            out.add(tokenIds(p, "prompt", model));
        } else if (p.isArray() && !p.isEmpty()) {
            for (int i = 0; i < p.size(); i++) {
                JsonNode e = p.get(i);
                if (e.isTextual()) out.add(model.encodeText(e.asText()));
                else if (e.isArray()) out.add(tokenIds(e, "prompt[" + i + "]", model));
                else throw ApiException.badRequest("'prompt[" + i + "]' must be a string or an array of token ids, got "
                            + Json.typeName(e) + ".", "prompt");
            }
        } else {
            throw ApiException.badRequest("'prompt' must be a non-empty string or array, got " + Json.typeName(p)
                    + (p.isArray() ? " with no elements" : "") + ".", "prompt");
        }
        for (int[] ids : out) {
            if (ids.length == 0) throw ApiException.badRequest("'prompt' encodes to no tokens; give some text.", "prompt");
        }
        return out;
    }

    private static int[] tokenIds(JsonNode arr, String where, ServedModel model) {
        int[] ids = new int[arr.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode e = arr.get(i);
            if (!e.isIntegralNumber() || e.asLong() < 0 || e.asLong() >= model.vocabSize()) {
                throw ApiException.badRequest("'" + where + "[" + i + "]' must be a token id in [0, " + model.vocabSize()
                        + "), got " + e + ".", "prompt");
            }
            ids[i] = e.asInt();
        }
        return ids;
    }

    private static ObjectNode completionLogprobs(ServedModel model, List<Logprobs.TokenLogprobs> lps, int offset) {
        ObjectNode o = Json.object();
        ArrayNode tokens = o.putArray("tokens"), values = o.putArray("token_logprobs"),
                tops = o.putArray("top_logprobs"), offsets = o.putArray("text_offset");
        int pos = offset;
        for (Logprobs.TokenLogprobs lp : lps) {
            String text = model.tokenText(lp.token());
            tokens.add(text);
            values.add(lp.logprob());
            ObjectNode top = tops.addObject();
            for (int k = 0; k < lp.topIds().length; k++) top.put(model.tokenText(lp.topIds()[k]), lp.topLogprobs()[k]);
            offsets.add(pos);
            pos += text.length();
        }
        return o;
    }

    // ---------------------------------------------------------------- shared

    /**
     * vLLM's {@code cache_salt}: requests share prefix-cache entries only with requests of the same salt.
     * ({@code user} is accepted and checked, but only identifies the caller, as at OpenAI.)
     */
    private static String cacheSalt(ObjectNode body) {
        Json.string(body, "user", null);
        return Json.string(body, "cache_salt", null);
    }

    /** An error inside a stream, in OpenAI's error shape. */
    private ObjectNode streamError(RuntimeException e) {
        ApiException api = e instanceof ApiException a ? a : ApiException.internal("The request failed in the engine: "
                + e.getMessage() + ". Other requests are unaffected.");
        if (!(e instanceof ApiException)) server.log().error("a streamed request failed", e);
        return LatheServer.openAiError(api);
    }

    private static boolean isEmpty(RequestOutput d) {
        return (d.text() == null || d.text().isEmpty()) && !d.finished();
    }

    private static boolean includeUsage(ObjectNode body, boolean stream) {
        ObjectNode so = Json.objectField(body, "stream_options");
        if (so == null) return false;
        if (!stream) throw ApiException.badRequest("'stream_options' is only allowed when 'stream' is true.", "stream_options");
        return Boolean.TRUE.equals(Json.bool(so, "include_usage", false));
    }

    private static ObjectNode chunkHeader(String id, String object, long created, String model) {
        ObjectNode chunk = Json.object();
        chunk.put("id", id);
        chunk.put("object", object);
        chunk.put("created", created);
        chunk.put("model", model);
        chunk.putNull("system_fingerprint");
        return chunk;
    }

    private static void putFinish(ObjectNode choice, FinishReason reason) {
        if (reason == null) choice.putNull("finish_reason");
        // OpenAI has no "abort"; a request cut short by shutdown reads as stopped, which clients understand
        else choice.put("finish_reason", reason == FinishReason.LENGTH ? "length" : "stop");
    }

    static ObjectNode usage(int prompt, int completion, int cached) {
        ObjectNode u = Json.object();
        u.put("prompt_tokens", prompt);
        u.put("completion_tokens", completion);
        u.put("total_tokens", prompt + completion);
        if (cached > 0) u.putObject("prompt_tokens_details").put("cached_tokens", cached);
        return u;
    }

    /** The OpenAI sampling fields (and the engine's extras) of a request body, validated. */
    static SamplingParams samplingParams(ObjectNode body, ServedModel model, Integer maxTokens, String maxParam,
                                         Integer logprobs) {
        var b = SamplingParams.builder();
        Double temperature = Json.number(body, "temperature", 1.0);
        if (temperature < 0 || temperature > 2) {
            throw ApiException.badRequest("'temperature' must be between 0 and 2, got " + temperature + ".", "temperature");
        }
        b.temperature(temperature);
        Double topP = Json.number(body, "top_p", 1.0);
        if (topP <= 0 || topP > 1) throw ApiException.badRequest("'top_p' must be in (0, 1], got " + topP + ".", "top_p");
        b.topP(topP);
        Integer n = Json.integer(body, "n", 1);
        if (n < 1 || n > 128) throw ApiException.badRequest("'n' must be between 1 and 128, got " + n + ".", "n");
        b.n(n);
        if (maxTokens != null && maxTokens < 1) {
            throw ApiException.badRequest("'" + maxParam + "' must be at least 1, got " + maxTokens + ".", maxParam);
        }
        b.maxTokens(maxTokens);
        Double presence = Json.number(body, "presence_penalty", 0.0);
        if (presence < -2 || presence > 2) {
            throw ApiException.badRequest("'presence_penalty' must be between -2 and 2, got " + presence + ".", "presence_penalty");
        }
        b.presencePenalty(presence);
        Double frequency = Json.number(body, "frequency_penalty", 0.0);
        if (frequency < -2 || frequency > 2) {
            throw ApiException.badRequest("'frequency_penalty' must be between -2 and 2, got " + frequency + ".", "frequency_penalty");
        }
        b.frequencyPenalty(frequency);
        b.seed(Json.longValue(body, "seed", null));
        b.stop(stops(body));
        ObjectNode bias = Json.objectField(body, "logit_bias");
        if (bias != null) {
            for (Iterator<Map.Entry<String, JsonNode>> it = bias.fields(); it.hasNext(); ) {
                var e = it.next();
                int id;
                try {
                    id = Integer.parseInt(e.getKey());
                } catch (NumberFormatException ex) {
                    throw ApiException.badRequest("'logit_bias' keys must be token ids, got '" + e.getKey() + "'.", "logit_bias");
                }
                if (id < 0 || id >= model.vocabSize()) {
                    throw ApiException.badRequest("'logit_bias' token id " + id + " is outside the vocabulary [0, "
                            + model.vocabSize() + ").", "logit_bias");
                }
                if (!e.getValue().isNumber()) {
                    throw ApiException.badRequest("'logit_bias[" + id + "]' must be a number, got "
                            + Json.typeName(e.getValue()) + ".", "logit_bias");
                }
                b.logitBias(id, (float) e.getValue().asDouble());
            }
        }
        b.logprobs(logprobs);
        // engine extras, as vLLM names them
        Integer topK = Json.integer(body, "top_k", 0);
        if (topK < -1) throw ApiException.badRequest("'top_k' must be -1 or 0 (off) or at least 1, got " + topK + ".", "top_k");
        b.topK(topK);
        Double minP = Json.number(body, "min_p", 0.0);
        if (minP < 0 || minP > 1) throw ApiException.badRequest("'min_p' must be between 0 and 1, got " + minP + ".", "min_p");
        b.minP(minP);
        Double rep = Json.number(body, "repetition_penalty", 1.0);
        if (!(rep > 0)) throw ApiException.badRequest("'repetition_penalty' must be > 0, got " + rep + ".", "repetition_penalty");
        b.repetitionPenalty(rep);
        b.ignoreEos(Json.bool(body, "ignore_eos", false));
        Integer minTokens = Json.integer(body, "min_tokens", 0);
        if (minTokens < 0 || (maxTokens != null && minTokens > maxTokens)) {
            throw ApiException.badRequest("'min_tokens' must be between 0 and the maximum tokens, got " + minTokens + ".", "min_tokens");
        }
        b.minTokens(minTokens);
        b.skipSpecialTokens(Json.bool(body, "skip_special_tokens", true));
        b.includeStopStrInOutput(Json.bool(body, "include_stop_str_in_output", false));
        ArrayNode stopIds = Json.arrayField(body, "stop_token_ids");
        if (stopIds != null) {
            List<Integer> ids = new ArrayList<>();
            for (JsonNode e : stopIds) {
                if (!e.isIntegralNumber() || e.asInt() < 0) {
                    throw ApiException.badRequest("'stop_token_ids' must hold token ids >= 0, got " + e + ".", "stop_token_ids");
                }
                ids.add(e.asInt());
            }
            b.stopTokenIds(ids);
        }
        try {
            return b.build();
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest(e.getMessage(), null);
        }
    }

    private static List<String> stops(ObjectNode body) {
        JsonNode s = body.get("stop");
        if (s == null || s.isNull()) return List.of();
        List<String> out = new ArrayList<>();
        if (s.isTextual()) {
            out.add(s.asText());
        } else if (s.isArray()) {
            for (JsonNode e : s) {
                if (!e.isTextual()) throw ApiException.badRequest("'stop' must be a string or an array of strings, got an"
                        + " array holding " + Json.typeName(e) + ".", "stop");
                out.add(e.asText());
            }
        } else {
            throw ApiException.badRequest("'stop' must be a string or an array of strings, got " + Json.typeName(s) + ".", "stop");
        }
        for (String x : out) if (x.isEmpty()) throw ApiException.badRequest("'stop' strings must not be empty.", "stop");
        return out;
    }
}
