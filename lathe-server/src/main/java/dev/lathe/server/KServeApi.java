package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.sampling.SamplingParams;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * The KServe v2 / Triton inference protocol over HTTP, shaped like Triton's TensorRT-LLM backend: a
 * BYTES tensor {@code text_input} in, {@code text_output} out, generation settings as input tensors
 * ({@code max_tokens}, {@code temperature}, {@code top_k}, {@code top_p}, {@code random_seed},
 * {@code presence_penalty}, {@code frequency_penalty}, {@code repetition_penalty}, {@code min_length},
 * {@code stop_words}, ...) or as request parameters; plus Triton's generate extension. Errors are
 * {@code {"error": "..."}}.
 */
final class KServeApi {
    static final String VERSION = "1";
    private final LatheServer server;

    KServeApi(LatheServer server) {
        this.server = server;
    }

    void serverMetadata(ServerRequest req, ServerResponse res) {
        ObjectNode o = Json.object();
        o.put("name", "lathe");
        String v = LatheServer.class.getPackage().getImplementationVersion();
        o.put("version", v == null ? "dev" : v);
        o.putArray("extensions").add("generate").add("model_configuration").add("statistics");
        LatheServer.sendJson(res, 200, o);
    }

    void live(ServerRequest req, ServerResponse res) {
        res.status(200).send();
    }

    void ready(ServerRequest req, ServerResponse res) {
        res.status(server.draining() ? 503 : 200).send();
    }

    void modelReady(ServerRequest req, ServerResponse res) {
        server.model(modelName(req));
        res.status(server.draining() ? 503 : 200).send();
    }

    void modelMetadata(ServerRequest req, ServerResponse res) {
        ServedModel m = server.model(modelName(req));
        ObjectNode o = Json.object();
        o.put("name", m.name());
        o.putArray("versions").add(VERSION);
        o.put("platform", "lathe");
        ArrayNode inputs = o.putArray("inputs");
        tensorMeta(inputs, "text_input", "BYTES");
        tensorMeta(inputs, "max_tokens", "INT32");
        tensorMeta(inputs, "temperature", "FP32");
        tensorMeta(inputs, "top_k", "INT32");
        tensorMeta(inputs, "top_p", "FP32");
        tensorMeta(inputs, "random_seed", "UINT64");
        tensorMeta(inputs, "presence_penalty", "FP32");
        tensorMeta(inputs, "frequency_penalty", "FP32");
        tensorMeta(inputs, "repetition_penalty", "FP32");
        tensorMeta(inputs, "min_length", "INT32");
        tensorMeta(inputs, "stop_words", "BYTES");
        tensorMeta(o.putArray("outputs"), "text_output", "BYTES");
        LatheServer.sendJson(res, 200, o);
    }

    private static void tensorMeta(ArrayNode arr, String name, String type) {
        ObjectNode t = arr.addObject();
        t.put("name", name);
        t.put("datatype", type);
        t.putArray("shape").add(-1).add(1);
    }

    /** The model named in the path; a version other than "1" is a 404, as the model has no other. */
    private String modelName(ServerRequest req) {
        var params = req.path().pathParameters();
        String name = params.get("model");
        if (params.contains("version") && !params.get("version").equals(VERSION)) {
            throw ApiException.notFound("model '" + name + "' has no version '" + params.get("version") + "'; the only one is " + VERSION + ".");
        }
        return name;
    }

    /** A parsed infer request: the prompts (one per element of {@code text_input}) and how to sample. */
    record InferCall(List<String> texts, int rank, SamplingParams params, boolean stream, String id) {}

    /** {@code POST /v2/models/{m}/infer}: each element of {@code text_input} is one prompt. */
    void infer(ServerRequest req, ServerResponse res) {
        ServedModel model = server.model(modelName(req));
        InferCall call = parseInfer(server.readJson(req), model);
        if (call.stream()) {
            throw ApiException.badRequest("'stream' is not available on /infer; use /generate_stream or gRPC ModelStreamInfer.", "stream");
        }
        List<String> outputs = new ArrayList<>();
        for (String text : call.texts()) outputs.add(generateText(model, text, call.params(), call.id()));
        ObjectNode o = Json.object();
        o.put("model_name", model.name());
        o.put("model_version", VERSION);
        if (call.id() != null) o.put("id", call.id());
        ObjectNode out = o.putArray("outputs").addObject();
        out.put("name", "text_output");
        out.put("datatype", "BYTES");
        ArrayNode shape = out.putArray("shape").add(outputs.size());
        if (call.rank() > 1) shape.add(1);
        ArrayNode data = out.putArray("data");
        outputs.forEach(data::add);
        LatheServer.sendJson(res, 200, o);
    }

    /** Reads a v2 infer body ({@code inputs} tensors with {@code data}, {@code parameters}); the gRPC front end builds the same shape. */
    static InferCall parseInfer(ObjectNode body, ServedModel model) {
        ArrayNode inputs = Json.arrayField(body, "inputs");
        if (inputs == null || inputs.isEmpty()) {
            throw ApiException.badRequest("'inputs' is required: an array of tensors with at least 'text_input'.", "inputs");
        }
        List<String> texts = null;
        int rank = 1;
        ObjectNode settings = Json.object();
        for (int i = 0; i < inputs.size(); i++) {
            JsonNode t = inputs.get(i);
            if (!t.isObject()) throw ApiException.badRequest("inputs[" + i + "] must be a tensor object, got " + Json.typeName(t) + ".", "inputs");
            String name = Json.requiredString(t, "name");
            ArrayNode data = Json.arrayField(t, "data");
            if (data == null) throw ApiException.badRequest("input tensor '" + name + "' has no 'data' array.", name);
            List<JsonNode> flat = new ArrayList<>();
            flatten(data, flat);
            if (name.equals("text_input")) {
                ArrayNode shape = Json.arrayField(t, "shape");
                if (shape != null) rank = shape.size();
                texts = new ArrayList<>();
                for (JsonNode e : flat) {
                    if (!e.isTextual()) throw ApiException.badRequest("'text_input' must be a BYTES tensor of strings, got an element that is "
                            + Json.typeName(e) + ".", "text_input");
                    texts.add(e.asText());
                }
            } else if (name.equals("stop_words") || name.equals("stop")) {
                ArrayNode stops = settings.putArray("stop_words");
                flat.forEach(stops::add);
            } else {
                for (JsonNode e : flat) {
                    // one value for the whole batch, as the TensorRT-LLM backend takes it
                    if (!e.equals(flat.get(0))) throw ApiException.badRequest("input tensor '" + name
                            + "' must hold one value for the whole request, got " + flat.size() + " different ones.", name);
                }
                if (!flat.isEmpty()) settings.set(name, flat.get(0));
            }
        }
        if (texts == null || texts.isEmpty()) {
            throw ApiException.badRequest("the request has no 'text_input' tensor (BYTES, the prompt text).", "text_input");
        }
        ObjectNode parameters = Json.objectField(body, "parameters");
        if (parameters != null) parameters.fields().forEachRemaining(e -> settings.putIfAbsent(e.getKey(), e.getValue()));
        boolean stream = Boolean.TRUE.equals(Json.bool(settings, "stream", false));
        return new InferCall(texts, rank, params(settings, model), stream, Json.string(body, "id", null));
    }

    String generateText(ServedModel model, String text, SamplingParams params, String id) {
        int[] prompt = model.encodeText(text);
        model.checkContext(prompt.length, params.maxTokens(), "text_input");
        String reqId = "infer-" + (id == null ? "" : id + "-") + UUID.randomUUID();
        long start = System.nanoTime();
        RequestStream rs = model.submit(new EngineRequest(reqId, prompt, params, null));
        var gen = new Generation(model, server, rs, start, params.n(), prompt.length);
        gen.run(d -> { });
        return gen.samples().get(0).text.toString();
    }

    /** {@code POST /v2/models/{m}/generate}: settings as top-level fields or under "parameters". */
    void generate(ServerRequest req, ServerResponse res) {
        ServedModel model = server.model(modelName(req));
        ObjectNode body = server.readJson(req);
        ObjectNode settings = generateSettings(body);
        String text = Json.string(body, "text_input", null);
        if (text == null) throw ApiException.badRequest("'text_input' is required: the prompt text.", "text_input");
        SamplingParams params = params(settings, model);
        String out = generateText(model, text, params, Json.string(body, "id", null));
        ObjectNode o = Json.object();
        o.put("model_name", model.name());
        o.put("model_version", VERSION);
        if (Json.present(body, "id")) o.put("id", Json.string(body, "id", null));
        o.put("text_output", out);
        LatheServer.sendJson(res, 200, o);
    }

    /** {@code POST /v2/models/{m}/generate_stream}: one SSE event per delta; a failure is an {"error"} event. */
    void generateStream(ServerRequest req, ServerResponse res) {
        ServedModel model = server.model(modelName(req));
        ObjectNode body = server.readJson(req);
        ObjectNode settings = generateSettings(body);
        String text = Json.string(body, "text_input", null);
        if (text == null) throw ApiException.badRequest("'text_input' is required: the prompt text.", "text_input");
        SamplingParams params = params(settings, model);
        int[] prompt = model.encodeText(text);
        model.checkContext(prompt.length, params.maxTokens(), "text_input");
        String reqId = "generate-" + UUID.randomUUID();
        long start = System.nanoTime();
        RequestStream rs = model.submit(new EngineRequest(reqId, prompt, params, null));
        var gen = new Generation(model, server, rs, start, params.n(), prompt.length);
        try (var sse = new SseStream(res)) {
            try {
                gen.run(d -> {
                    if ((d.text() == null || d.text().isEmpty()) && !d.finished()) return;
                    ObjectNode o = Json.object();
                    o.put("model_name", model.name());
                    o.put("model_version", VERSION);
                    o.put("text_output", d.text() == null ? "" : d.text());
                    if (d.finished()) o.put("finish_reason", d.finishReason().apiName());
                    sse.send(o);
                });
            } catch (SseStream.ClientGoneException e) {
                throw e;
            } catch (RuntimeException e) {
                sse.send(Json.object().put("error", e.getMessage()));
            }
        } catch (SseStream.ClientGoneException e) {
            server.log().info("client went away during {}; request aborted", reqId);
        }
    }

    private static ObjectNode generateSettings(ObjectNode body) {
        ObjectNode settings = Json.object();
        for (Iterator<Map.Entry<String, JsonNode>> it = body.fields(); it.hasNext(); ) {
            var e = it.next();
            if (!e.getKey().equals("text_input") && !e.getKey().equals("parameters") && !e.getKey().equals("id")) {
                settings.set(e.getKey(), e.getValue());
            }
        }
        ObjectNode parameters = Json.objectField(body, "parameters");
        if (parameters != null) parameters.fields().forEachRemaining(e -> settings.putIfAbsent(e.getKey(), e.getValue()));
        return settings;
    }

    /** TensorRT-LLM backend names, mapped onto the OpenAI names that {@link OpenAiApi#samplingParams} checks. */
    static SamplingParams params(ObjectNode s, ServedModel model) {
        ObjectNode o = Json.object();
        copy(s, o, "max_tokens", "max_tokens");
        if (!Json.present(o, "max_tokens")) o.put("max_tokens", 16);
        copy(s, o, "temperature", "temperature");
        copy(s, o, "top_p", "top_p");
        copy(s, o, "top_k", "top_k");
        copy(s, o, "min_p", "min_p");
        copy(s, o, "random_seed", "seed");
        copy(s, o, "seed", "seed");
        copy(s, o, "presence_penalty", "presence_penalty");
        copy(s, o, "frequency_penalty", "frequency_penalty");
        copy(s, o, "repetition_penalty", "repetition_penalty");
        copy(s, o, "min_length", "min_tokens");
        copy(s, o, "min_tokens", "min_tokens");
        copy(s, o, "ignore_eos", "ignore_eos");
        copy(s, o, "stop_words", "stop");
        copy(s, o, "stop", "stop");
        JsonNode beam = s.get("beam_width");
        if (beam != null && !(beam.isNumber() && beam.asInt() == 1)) {
            throw ApiException.badRequest("'beam_width' must be 1; this server does not do beam search.", "beam_width");
        }
        Integer maxTokens = Json.integer(o, "max_tokens", null);
        return OpenAiApi.samplingParams(o, model, maxTokens, "max_tokens", null);
    }

    private static void copy(ObjectNode from, ObjectNode to, String src, String dst) {
        JsonNode v = from.get(src);
        if (v != null && !v.isNull() && !to.has(dst)) to.set(dst, v);
    }

    private static void flatten(JsonNode n, List<JsonNode> out) {
        if (n.isArray()) for (JsonNode e : n) flatten(e, out);
        else out.add(n);
    }
}
