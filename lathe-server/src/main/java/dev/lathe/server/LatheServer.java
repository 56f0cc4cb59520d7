package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lathe.core.engine.Engine;
import dev.lathe.core.engine.RequestStream;
import io.helidon.http.HeaderNames;
import io.helidon.webserver.WebServer;
import io.helidon.webserver.http.Handler;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The Lathe HTTP server: the OpenAI API ({@code /v1/...}), the KServe v2 / Triton protocol
 * ({@code /v2/...}), Prometheus {@code /metrics} and {@code /health}, all on one port, over any number
 * of engines addressed by model name. Each request runs on its own virtual thread.
 *
 * <pre>{@code
 * try (LatheServer s = LatheServer.builder().model("llama", engine).port(8000).build().start()) { ... }
 * }</pre>
 */
public final class LatheServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(LatheServer.class);
    private static final Logger ACCESS = LoggerFactory.getLogger("dev.lathe.server.access");

    /** Which error body a route answers with. */
    enum Protocol { OPENAI, KSERVE, PLAIN }

    private final Map<String, ServedModel> models;
    private final String defaultModel;
    private final String host;
    private final int requestedPort;
    private final String apiKey;
    private final long maxBodyBytes;
    private final long graceMillis;
    private final boolean closeEngines;
    private final ServerMetrics metrics = new ServerMetrics();
    private final AtomicInteger inFlight = new AtomicInteger();
    /** Engine requests whose outputs a handler is taking now: aborted when the grace period ends. */
    private final Set<RequestStream> active = ConcurrentHashMap.newKeySet();
    private volatile boolean draining;
    private final int requestedGrpcPort;
    private final boolean grpcOnHttpPort;
    private WebServer web;
    private GrpcEndpoint grpc; // its own class, so the gRPC libraries load only when gRPC is on

    private LatheServer(Builder b) {
        this.models = new LinkedHashMap<>(b.models);
        this.defaultModel = b.models.keySet().iterator().next();
        this.host = b.host;
        this.requestedPort = b.port;
        this.requestedGrpcPort = b.grpcPort;
        this.grpcOnHttpPort = b.grpcOnHttpPort;
        this.apiKey = b.apiKey;
        this.maxBodyBytes = b.maxBodyBytes;
        this.graceMillis = b.graceMillis;
        this.closeEngines = b.closeEngines;
        for (ServedModel m : models.values()) metrics.registerModel(m);
    }

    public static Builder builder() { return new Builder(); }

    /** Binds the port and starts serving; returns this. */
    public LatheServer start() {
        var openAi = new OpenAiApi(this);
        var kserve = new KServeApi(this);
        HttpRouting.Builder r = HttpRouting.builder();
        r.get("/health", wrap("health", Protocol.PLAIN, false, (req, res) -> {
            if (draining) sendJson(res, 503, Json.object().put("status", "draining"));
            else sendJson(res, 200, Json.object().put("status", "ok"));
        }));
        r.get("/metrics", wrap("metrics", Protocol.PLAIN, false, (req, res) -> {
            res.header(HeaderNames.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
            res.send(metrics.scrape().getBytes(StandardCharsets.UTF_8));
        }));
        r.get("/v1/models", wrap("models", Protocol.OPENAI, true, openAi::models));
        r.get("/v1/models/{model}", wrap("models", Protocol.OPENAI, true, openAi::model));
        r.post("/v1/chat/completions", wrap("chat_completions", Protocol.OPENAI, true, openAi::chat));
        r.post("/v1/completions", wrap("completions", Protocol.OPENAI, true, openAi::completions));
        r.get("/v2", wrap("v2_metadata", Protocol.KSERVE, true, kserve::serverMetadata));
        r.get("/v2/health/live", wrap("v2_live", Protocol.KSERVE, false, kserve::live));
        r.get("/v2/health/ready", wrap("v2_ready", Protocol.KSERVE, false, kserve::ready));
        r.get("/v2/models/{model}", wrap("v2_model_metadata", Protocol.KSERVE, true, kserve::modelMetadata));
        r.get("/v2/models/{model}/ready", wrap("v2_model_ready", Protocol.KSERVE, true, kserve::modelReady));
        r.post("/v2/models/{model}/infer", wrap("v2_infer", Protocol.KSERVE, true, kserve::infer));
        r.post("/v2/models/{model}/generate", wrap("v2_generate", Protocol.KSERVE, true, kserve::generate));
        r.post("/v2/models/{model}/generate_stream", wrap("v2_generate_stream", Protocol.KSERVE, true, kserve::generateStream));
        // the same routes with an explicit model version (this server has version "1" of each model)
        r.get("/v2/models/{model}/versions/{version}", wrap("v2_model_metadata", Protocol.KSERVE, true, kserve::modelMetadata));
        r.get("/v2/models/{model}/versions/{version}/ready", wrap("v2_model_ready", Protocol.KSERVE, true, kserve::modelReady));
        r.post("/v2/models/{model}/versions/{version}/infer", wrap("v2_infer", Protocol.KSERVE, true, kserve::infer));
        r.post("/v2/models/{model}/versions/{version}/generate", wrap("v2_generate", Protocol.KSERVE, true, kserve::generate));
        r.post("/v2/models/{model}/versions/{version}/generate_stream",
                wrap("v2_generate_stream", Protocol.KSERVE, true, kserve::generateStream));
        r.any("/v2/*", wrap("not_found", Protocol.KSERVE, false, (req, res) -> {
            throw ApiException.notFound("No route for " + req.prologue().method().text() + " " + req.path().path() + ".");
        }));
        r.any(wrap("not_found", Protocol.OPENAI, false, (req, res) -> {
            throw ApiException.notFound("No route for " + req.prologue().method().text() + " " + req.path().path()
                    + "; the API lives under /v1 (OpenAI) and /v2 (KServe v2).");
        }));
        if (requestedGrpcPort >= 0) startGrpc(kserve);
        var web = WebServer.builder().host(host).port(requestedPort).shutdownHook(false).routing(r);
        if (grpcOnHttpPort) web.addRouting(GrpcEndpoint.httpRouting(this, kserve, header -> apiKey == null || authorized(header)));
        this.web = web.build().start();
        LOG.info("serving {} on http://{}:{}", models.keySet(), host, web.port());
        return this;
    }

    /** The bound port (useful with port 0). */
    public int port() { return web.port(); }

    /** The bound gRPC port, or -1 when gRPC is off. */
    public int grpcPort() { return grpc == null ? -1 : grpc.port(); }

    private void startGrpc(KServeApi kserve) {
        grpc = GrpcEndpoint.start(this, kserve, host, requestedGrpcPort, maxBodyBytes,
                header -> apiKey == null || authorized(header));
        LOG.info("gRPC inference.GRPCInferenceService on {}:{}", host, grpc.port());
    }

    public Collection<ServedModel> models() { return models.values(); }

    /** The model of that name, the default one for a null name, or a 404. */
    public ServedModel model(String name) {
        if (name == null) return models.get(defaultModel);
        ServedModel m = models.get(name);
        if (m == null) throw ApiException.modelNotFound(name);
        return m;
    }

    ServerMetrics metrics() { return metrics; }

    Logger log() { return LOG; }

    boolean draining() { return draining; }

    void track(RequestStream s) { active.add(s); }

    void untrack(RequestStream s) { active.remove(s); }

    /**
     * Graceful stop: refuse new requests (503), let running ones finish within the grace period, then
     * abort what is left, stop the engines and close the port.
     */
    public void stop() {
        if (web == null) return;
        draining = true;
        long deadline = System.currentTimeMillis() + graceMillis;
        waitIdle(deadline);
        for (RequestStream s : active) s.abort();
        waitIdle(System.currentTimeMillis() + 2000);
        if (closeEngines) {
            for (ServedModel m : models.values()) {
                try {
                    m.engine().shutdown(0);
                } catch (RuntimeException e) {
                    LOG.warn("engine of {} failed to shut down cleanly: {}", m.name(), e.toString());
                }
            }
        }
        if (grpc != null) {
            grpc.stop();
            grpc = null;
        }
        web.stop();
        web = null;
        LOG.info("server stopped");
    }

    private void waitIdle(long deadline) {
        while (inFlight.get() > 0 && System.currentTimeMillis() < deadline) {
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    @Override
    public void close() { stop(); }

    // ---------------------------------------------------------------- request plumbing

    /** Every route goes through here: API key, draining, errors in the protocol's shape, metrics, access log. */
    private Handler wrap(String endpoint, Protocol protocol, boolean needsKey, Handler h) {
        return (req, res) -> {
            long t0 = System.nanoTime();
            inFlight.incrementAndGet();
            String error = null;
            try {
                if (needsKey && apiKey != null && !authorized(req)) {
                    throw new ApiException(401, "invalid_request_error", "Incorrect or missing API key; send it as"
                            + " 'Authorization: Bearer <key>'.", null, "invalid_api_key", 0);
                }
                if (draining && needsKey) throw ApiException.unavailable("The server is shutting down; retry on another replica.");
                h.handle(req, res);
            } catch (ApiException e) {
                error = e.getMessage();
                sendError(res, protocol, e);
            } catch (Exception | LinkageError | StackOverflowError e) {
                error = e.toString();
                LOG.error("{} {} failed", req.prologue().method().text(), req.path().path(), e);
                sendError(res, protocol, ApiException.internal("The server failed on this request: " + e
                        + ". Other requests are unaffected; report this if it repeats."));
            } finally {
                inFlight.decrementAndGet();
                int status = res.status().code();
                metrics.countRequest(endpoint, status);
                if (ACCESS.isInfoEnabled()) {
                    ACCESS.info("method={} path={} endpoint={} status={} duration_ms={} bytes={} remote={}{}",
                            req.prologue().method().text(), req.path().path(), endpoint, status,
                            (System.nanoTime() - t0) / 1_000_000, res.bytesWritten(),
                            req.remotePeer().host(), error == null ? "" : " error=\"" + error.replace('"', '\'') + "\"");
                }
            }
        };
    }

    private boolean authorized(ServerRequest req) {
        return authorized(req.headers().value(HeaderNames.AUTHORIZATION).orElse(null));
    }

    private boolean authorized(String header) {
        if (header == null) return false;
        String given = header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).strip() : "";
        return MessageDigest.isEqual(given.getBytes(StandardCharsets.UTF_8), apiKey.getBytes(StandardCharsets.UTF_8));
    }

    private static void sendError(ServerResponse res, Protocol protocol, ApiException e) {
        if (res.isSent()) return; // a stream already started: nothing more can be said in HTTP
        JsonNode body = protocol == Protocol.KSERVE ? Json.object().put("error", e.getMessage()) : openAiError(e);
        if (e.retryAfterSeconds() > 0) res.header(HeaderNames.RETRY_AFTER, Integer.toString(e.retryAfterSeconds()));
        sendJson(res, e.status(), body);
    }

    /** OpenAI's error body: {@code {"error": {"message", "type", "param", "code"}}}. */
    static ObjectNode openAiError(ApiException e) {
        ObjectNode err = Json.object();
        err.put("message", e.getMessage());
        err.put("type", e.type());
        if (e.param() == null) err.putNull("param"); else err.put("param", e.param());
        if (e.code() == null) err.putNull("code"); else err.put("code", e.code());
        ObjectNode o = Json.object();
        o.set("error", err);
        return o;
    }

    static void sendJson(ServerResponse res, int status, JsonNode body) {
        res.status(status);
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(Json.bytes(body));
    }

    /** The body as a JSON object, at most {@code maxBodyBytes} of strict UTF-8; else a 400 or 413. */
    ObjectNode readJson(ServerRequest req) {
        long declared = req.headers().value(HeaderNames.CONTENT_LENGTH).map(Long::parseLong).orElse(-1L);
        if (declared > maxBodyBytes * 64) throw tooLarge(declared);
        var buf = new ByteArrayOutputStream();
        long total = 0;
        try (InputStream in = req.content().inputStream()) {
            byte[] chunk = new byte[16384];
            int n;
            // read to the end even past the limit (keeping nothing) so the client gets our answer, not a reset
            while ((n = in.read(chunk)) > 0) {
                total += n;
                if (total <= maxBodyBytes) buf.write(chunk, 0, n);
            }
        } catch (IOException e) {
            throw ApiException.badRequest("Could not read the request body: " + e.getMessage(), null);
        }
        if (total > maxBodyBytes) throw tooLarge(total);
        return Json.parseObject(buf.toByteArray());
    }

    private ApiException tooLarge(long bytes) {
        return new ApiException(413, "invalid_request_error", "The request body has " + bytes + " bytes; this server"
                + " takes at most " + maxBodyBytes + " (--max-body-size).", null, "request_too_large", 0);
    }

    /** Settings of a server; {@link #build()} checks them. */
    public static final class Builder {
        private final Map<String, ServedModel> models = new LinkedHashMap<>();
        private String host = "127.0.0.1";
        private int port = 8000;
        private int grpcPort = -1;
        private boolean grpcOnHttpPort = true;
        private String apiKey;
        private long maxBodyBytes = 32L << 20;
        private long graceMillis = 30_000;
        private boolean closeEngines = true;

        private Builder() {}

        /** Serves {@code engine} as {@code name}; the first model added is the default. */
        public Builder model(String name, Engine engine) {
            if (models.containsKey(name)) throw new IllegalArgumentException("model name '" + name + "' is given twice");
            models.put(name, new ServedModel(name, engine));
            return this;
        }

        public Builder host(String v) { host = v; return this; }

        /** 0 picks a free port. */
        public Builder port(int v) { port = v; return this; }

        /** The KServe v2 gRPC port; 0 picks a free one, -1 (the default) serves no gRPC. */
        /** A port of its own for gRPC as well (0: any free one), or -1 (the default) for none. */
        public Builder grpcPort(int v) { grpcPort = v; return this; }

        /** Whether gRPC clients reach the KServe v2 service on the HTTP port (HTTP/2); on by default. */
        public Builder grpcOnHttpPort(boolean v) { grpcOnHttpPort = v; return this; }

        /** Null = no authentication. */
        public Builder apiKey(String v) { apiKey = v == null || v.isEmpty() ? null : v; return this; }

        public Builder maxBodyBytes(long v) { maxBodyBytes = v; return this; }

        public Builder gracePeriodMillis(long v) { graceMillis = v; return this; }

        /** Whether {@link #stop()} shuts the engines down (default true). */
        public Builder closeEngines(boolean v) { closeEngines = v; return this; }

        public LatheServer build() {
            if (models.isEmpty()) throw new IllegalArgumentException("a server needs at least one model");
            if (grpcPort < -1 || grpcPort > 65535) throw new IllegalArgumentException("gRPC port must be in -1..65535, got " + grpcPort);
            if (port < 0 || port > 65535) throw new IllegalArgumentException("port must be in 0..65535, got " + port);
            if (maxBodyBytes < 1024) throw new IllegalArgumentException("max body size must be at least 1024 bytes, got " + maxBodyBytes);
            if (graceMillis < 0) throw new IllegalArgumentException("grace period must be >= 0 ms, got " + graceMillis);
            return new LatheServer(this);
        }
    }

    static List<String> names(Collection<ServedModel> ms) {
        List<String> out = new ArrayList<>();
        for (ServedModel m : ms) out.add(m.name());
        return out;
    }
}
