package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.protobuf.ByteString;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.server.grpc.proto.GRPCInferenceServiceGrpc;
import dev.lathe.server.grpc.proto.InferParameter;
import dev.lathe.server.grpc.proto.InferTensorContents;
import dev.lathe.server.grpc.proto.ModelInferRequest;
import dev.lathe.server.grpc.proto.ModelInferResponse;
import dev.lathe.server.grpc.proto.ModelMetadataRequest;
import dev.lathe.server.grpc.proto.ModelMetadataResponse;
import dev.lathe.server.grpc.proto.ModelReadyRequest;
import dev.lathe.server.grpc.proto.ModelReadyResponse;
import dev.lathe.server.grpc.proto.ModelStreamInferResponse;
import dev.lathe.server.grpc.proto.ServerLiveRequest;
import dev.lathe.server.grpc.proto.ServerLiveResponse;
import dev.lathe.server.grpc.proto.ServerMetadataRequest;
import dev.lathe.server.grpc.proto.ServerMetadataResponse;
import dev.lathe.server.grpc.proto.ServerReadyRequest;
import dev.lathe.server.grpc.proto.ServerReadyResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * KServe v2 {@code inference.GRPCInferenceService} over the same models and request handling as the
 * HTTP {@code /v2} routes: a request is turned into the HTTP infer body and parsed by
 * {@link KServeApi#parseInfer}. Tensor data may come as typed {@code contents} or as
 * {@code raw_input_contents}; the response answers in the same form.
 */
final class GrpcInferenceService extends GRPCInferenceServiceGrpc.GRPCInferenceServiceImplBase {
    private static final JsonNodeFactory F = JsonNodeFactory.instance;
    private final LatheServer server;
    private final KServeApi kserve;

    GrpcInferenceService(LatheServer server, KServeApi kserve) {
        this.server = server;
        this.kserve = kserve;
    }

    @Override
    public void serverLive(ServerLiveRequest req, StreamObserver<ServerLiveResponse> out) {
        out.onNext(ServerLiveResponse.newBuilder().setLive(true).build());
        out.onCompleted();
    }

    @Override
    public void serverReady(ServerReadyRequest req, StreamObserver<ServerReadyResponse> out) {
        out.onNext(ServerReadyResponse.newBuilder().setReady(!server.draining()).build());
        out.onCompleted();
    }

    @Override
    public void modelReady(ModelReadyRequest req, StreamObserver<ModelReadyResponse> out) {
        unary(out, () -> {
            server.model(req.getName());
            return ModelReadyResponse.newBuilder().setReady(!server.draining()).build();
        });
    }

    @Override
    public void serverMetadata(ServerMetadataRequest req, StreamObserver<ServerMetadataResponse> out) {
        String v = LatheServer.class.getPackage().getImplementationVersion();
        out.onNext(ServerMetadataResponse.newBuilder().setName("lathe").setVersion(v == null ? "dev" : v)
                .addExtensions("generate").build());
        out.onCompleted();
    }

    @Override
    public void modelMetadata(ModelMetadataRequest req, StreamObserver<ModelMetadataResponse> out) {
        unary(out, () -> {
            ServedModel m = server.model(req.getName());
            var b = ModelMetadataResponse.newBuilder().setName(m.name()).addVersions(KServeApi.VERSION).setPlatform("lathe");
            String[][] inputs = {{"text_input", "BYTES"}, {"max_tokens", "INT32"}, {"temperature", "FP32"},
                    {"top_k", "INT32"}, {"top_p", "FP32"}, {"random_seed", "UINT64"}, {"stream", "BOOL"},
                    {"stop_words", "BYTES"}};
            for (String[] in : inputs) {
                b.addInputs(ModelMetadataResponse.TensorMetadata.newBuilder().setName(in[0]).setDatatype(in[1])
                        .addShape(-1).addShape(1));
            }
            b.addOutputs(ModelMetadataResponse.TensorMetadata.newBuilder().setName("text_output").setDatatype("BYTES")
                    .addShape(-1).addShape(1));
            return b.build();
        });
    }

    @Override
    public void modelInfer(ModelInferRequest req, StreamObserver<ModelInferResponse> out) {
        unary(out, () -> {
            ServedModel model = server.model(req.getModelName());
            var call = KServeApi.parseInfer(toJson(req), model);
            if (call.stream()) {
                throw ApiException.badRequest("'stream' needs ModelStreamInfer; ModelInfer answers once.", "stream");
            }
            List<String> texts = new ArrayList<>();
            for (String t : call.texts()) texts.add(kserve.generateText(model, t, call.params(), call.id()));
            return response(model, req, texts, call.rank());
        });
    }

    /**
     * Triton's decoupled streaming: with {@code stream} true each delta is a response and the last one
     * carries the parameter {@code triton_final_response}; otherwise one response per request. A bad
     * request answers with {@code error_message} and the stream goes on.
     */
    @Override
    public StreamObserver<ModelInferRequest> modelStreamInfer(StreamObserver<ModelStreamInferResponse> out) {
        var calls = (ServerCallStreamObserver<ModelStreamInferResponse>) out;
        var running = new java.util.concurrent.CopyOnWriteArrayList<RequestStream>();
        calls.setOnCancelHandler(() -> running.forEach(RequestStream::abort));
        Object lock = new Object();
        return new StreamObserver<>() {
            @Override
            public void onNext(ModelInferRequest req) {
                try {
                    ServedModel model = server.model(req.getModelName());
                    var call = KServeApi.parseInfer(toJson(req), model);
                    if (!call.stream()) {
                        List<String> texts = new ArrayList<>();
                        for (String t : call.texts()) texts.add(kserve.generateText(model, t, call.params(), call.id()));
                        synchronized (lock) {
                            out.onNext(ModelStreamInferResponse.newBuilder()
                                    .setInferResponse(response(model, req, texts, call.rank())).build());
                        }
                        return;
                    }
                    if (call.texts().size() != 1) {
                        throw ApiException.badRequest("a streamed request takes one prompt, got " + call.texts().size() + ".", "text_input");
                    }
                    int[] prompt = model.encodeText(call.texts().getFirst());
                    model.checkContext(prompt.length, call.params().maxTokens(), "text_input");
                    long start = System.nanoTime();
                    RequestStream rs = model.submit(new EngineRequest("grpc-" + UUID.randomUUID(), prompt, call.params(), null));
                    running.add(rs);
                    try {
                        new Generation(model, server, rs, start, call.params().n(), prompt.length).run(d -> {
                            if (calls.isCancelled()) throw new SseStream.ClientGoneException(null);
                            if ((d.text() == null || d.text().isEmpty()) && !d.finished()) return;
                            ModelInferResponse r = response(model, req, List.of(d.text() == null ? "" : d.text()),
                                    call.rank()).toBuilder()
                                    .putParameters("triton_final_response", InferParameter.newBuilder().setBoolParam(d.finished()).build())
                                    .build();
                            synchronized (lock) {
                                out.onNext(ModelStreamInferResponse.newBuilder().setInferResponse(r).build());
                            }
                        });
                    } finally {
                        running.remove(rs);
                    }
                } catch (SseStream.ClientGoneException e) {
                    // the client cancelled: the request was aborted
                } catch (ApiException e) {
                    synchronized (lock) {
                        out.onNext(ModelStreamInferResponse.newBuilder().setErrorMessage(e.getMessage()).build());
                    }
                } catch (RuntimeException e) {
                    synchronized (lock) {
                        out.onNext(ModelStreamInferResponse.newBuilder().setErrorMessage("the server failed on this request: " + e).build());
                    }
                }
            }

            @Override
            public void onError(Throwable t) {
                running.forEach(RequestStream::abort);
            }

            @Override
            public void onCompleted() {
                synchronized (lock) {
                    out.onCompleted();
                }
            }
        };
    }

    private static ModelInferResponse response(ServedModel model, ModelInferRequest req, List<String> texts, int rank) {
        var t = ModelInferResponse.InferOutputTensor.newBuilder().setName("text_output").setDatatype("BYTES")
                .addShape(texts.size());
        if (rank > 1) t.addShape(1);
        var b = ModelInferResponse.newBuilder().setModelName(model.name()).setModelVersion(KServeApi.VERSION).setId(req.getId());
        if (req.getRawInputContentsCount() > 0) {
            // answer raw for raw: 4-byte little-endian length, then the UTF-8 bytes, per element
            var bytes = ByteString.newOutput();
            for (String s : texts) {
                byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
                bytes.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(utf8.length).array(), 0, 4);
                bytes.write(utf8, 0, utf8.length);
            }
            b.addOutputs(t).addRawOutputContents(bytes.toByteString());
        } else {
            var c = InferTensorContents.newBuilder();
            for (String s : texts) c.addBytesContents(ByteString.copyFromUtf8(s));
            b.addOutputs(t.setContents(c));
        }
        return b.build();
    }

    /** The request as the HTTP infer body: inputs with flat {@code data}, parameters as JSON values. */
    static ObjectNode toJson(ModelInferRequest req) {
        ObjectNode body = Json.object();
        if (!req.getId().isEmpty()) body.put("id", req.getId());
        ObjectNode params = body.putObject("parameters");
        for (Map.Entry<String, InferParameter> e : req.getParametersMap().entrySet()) params.set(e.getKey(), value(e.getValue()));
        ArrayNode inputs = body.putArray("inputs");
        boolean raw = req.getRawInputContentsCount() > 0;
        if (raw && req.getRawInputContentsCount() != req.getInputsCount()) {
            throw ApiException.badRequest("raw_input_contents has " + req.getRawInputContentsCount() + " entries for "
                    + req.getInputsCount() + " inputs; give one per input.", "raw_input_contents");
        }
        for (int i = 0; i < req.getInputsCount(); i++) {
            var in = req.getInputs(i);
            ObjectNode t = inputs.addObject();
            t.put("name", in.getName());
            t.put("datatype", in.getDatatype());
            ArrayNode shape = t.putArray("shape");
            in.getShapeList().forEach(shape::add);
            ArrayNode data = t.putArray("data");
            if (raw) decodeRaw(in.getName(), in.getDatatype(), req.getRawInputContents(i), data);
            else contents(in.getDatatype(), in.getContents(), data);
        }
        return body;
    }

    private static JsonNode value(InferParameter p) {
        return switch (p.getParameterChoiceCase()) {
            case BOOL_PARAM -> F.booleanNode(p.getBoolParam());
            case INT64_PARAM -> F.numberNode(p.getInt64Param());
            case STRING_PARAM -> F.textNode(p.getStringParam());
            case DOUBLE_PARAM -> F.numberNode(p.getDoubleParam());
            case UINT64_PARAM -> F.numberNode(p.getUint64Param());
            case PARAMETERCHOICE_NOT_SET -> F.nullNode();
        };
    }

    private static void contents(String type, InferTensorContents c, ArrayNode data) {
        switch (type) {
            case "BYTES" -> c.getBytesContentsList().forEach(b -> data.add(b.toStringUtf8()));
            case "BOOL" -> c.getBoolContentsList().forEach(data::add);
            case "INT8", "INT16", "INT32" -> c.getIntContentsList().forEach(data::add);
            case "INT64" -> c.getInt64ContentsList().forEach(data::add);
            case "UINT8", "UINT16", "UINT32" -> c.getUintContentsList().forEach(v -> data.add(Integer.toUnsignedLong(v)));
            case "UINT64" -> c.getUint64ContentsList().forEach(data::add);
            case "FP32" -> c.getFp32ContentsList().forEach(v -> data.add(v.doubleValue()));
            case "FP64" -> c.getFp64ContentsList().forEach(data::add);
            default -> throw ApiException.badRequest("datatype " + type + " is not supported; use BYTES, BOOL, INT32,"
                    + " INT64, UINT32, UINT64, FP32 or FP64.", "datatype");
        }
    }

    private static void decodeRaw(String name, String type, ByteString raw, ArrayNode data) {
        ByteBuffer b = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        try {
            switch (type) {
                case "BYTES" -> {
                    while (b.hasRemaining()) {
                        int len = b.getInt();
                        if (len < 0 || len > b.remaining()) throw new IllegalArgumentException("element length " + len);
                        byte[] s = new byte[len];
                        b.get(s);
                        data.add(new String(s, StandardCharsets.UTF_8));
                    }
                }
                case "BOOL" -> { while (b.hasRemaining()) data.add(b.get() != 0); }
                case "INT32" -> { while (b.hasRemaining()) data.add(b.getInt()); }
                case "INT64" -> { while (b.hasRemaining()) data.add(b.getLong()); }
                case "UINT32" -> { while (b.hasRemaining()) data.add(Integer.toUnsignedLong(b.getInt())); }
                case "UINT64" -> { while (b.hasRemaining()) data.add(b.getLong()); }
                case "FP32" -> { while (b.hasRemaining()) data.add((double) b.getFloat()); }
                case "FP64" -> { while (b.hasRemaining()) data.add(b.getDouble()); }
                default -> throw ApiException.badRequest("datatype " + type + " of input '" + name + "' is not supported"
                        + " in raw_input_contents.", name);
            }
        } catch (java.nio.BufferUnderflowException | IllegalArgumentException e) {
            throw ApiException.badRequest("raw_input_contents of input '" + name + "' (" + type + ", " + raw.size()
                    + " bytes) is malformed: " + e.getMessage() + ".", name);
        }
    }

    private interface Call<T> {
        T run();
    }

    private <T> void unary(StreamObserver<T> out, Call<T> call) {
        T result;
        try {
            result = call.run();
        } catch (ApiException e) {
            out.onError(status(e));
            return;
        } catch (RuntimeException e) {
            server.log().error("gRPC request failed", e);
            out.onError(Status.INTERNAL.withDescription("the server failed on this request: " + e).asRuntimeException());
            return;
        }
        out.onNext(result);
        out.onCompleted();
    }

    static StatusRuntimeException status(ApiException e) {
        Status s = switch (e.status()) {
            case 400, 413 -> Status.INVALID_ARGUMENT;
            case 401 -> Status.UNAUTHENTICATED;
            case 404 -> Status.NOT_FOUND;
            case 429 -> Status.RESOURCE_EXHAUSTED;
            case 503 -> Status.UNAVAILABLE;
            default -> Status.INTERNAL;
        };
        return s.withDescription(e.getMessage()).asRuntimeException();
    }
}
