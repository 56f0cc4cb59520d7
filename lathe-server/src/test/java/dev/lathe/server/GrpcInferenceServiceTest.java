package dev.lathe.server;

import com.google.protobuf.ByteString;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.tokenizer.Tokenizer;
import dev.lathe.server.grpc.proto.GRPCInferenceServiceGrpc;
import dev.lathe.server.grpc.proto.InferParameter;
import dev.lathe.server.grpc.proto.InferTensorContents;
import dev.lathe.server.grpc.proto.ModelInferRequest;
import dev.lathe.server.grpc.proto.ModelInferResponse;
import dev.lathe.server.grpc.proto.ModelMetadataRequest;
import dev.lathe.server.grpc.proto.ModelReadyRequest;
import dev.lathe.server.grpc.proto.ModelStreamInferResponse;
import dev.lathe.server.grpc.proto.ServerLiveRequest;
import dev.lathe.server.grpc.proto.ServerMetadataRequest;
import dev.lathe.server.grpc.proto.ServerReadyRequest;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class GrpcInferenceServiceTest {
    private LatheServer server;
    private ManagedChannel channel;
    private GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub stub;
    private GRPCInferenceServiceGrpc.GRPCInferenceServiceStub async;
    private Tokenizer tok;

    @BeforeAll
    void start() {
        // gRPC on the HTTP port (HTTP/2 with prior knowledge), next to the OpenAI and KServe HTTP routes
        server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 16)).apiKey("key").port(0).build().start();
        channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
        var md = new Metadata();
        md.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer key");
        stub = GRPCInferenceServiceGrpc.newBlockingStub(channel).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md));
        async = GRPCInferenceServiceGrpc.newStub(channel).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md));
        tok = TestModels.model().tokenizer().orElseThrow();
    }

    @AfterAll
    void stop() throws InterruptedException {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        server.stop();
    }

    private String greedy(String prompt, int maxTokens) {
        return TestModels.reference(tok.encode(prompt, true),
                SamplingParams.builder().temperature(0).maxTokens(maxTokens).ignoreEos(true).build());
    }

    private static ModelInferRequest.Builder request(String model, String text, int maxTokens) {
        return ModelInferRequest.newBuilder().setModelName(model).setId("r1")
                .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("text_input").setDatatype("BYTES")
                        .addShape(1).addShape(1)
                        .setContents(InferTensorContents.newBuilder().addBytesContents(ByteString.copyFromUtf8(text))))
                .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("max_tokens").setDatatype("INT32")
                        .addShape(1).addShape(1).setContents(InferTensorContents.newBuilder().addIntContents(maxTokens)))
                .putParameters("temperature", InferParameter.newBuilder().setDoubleParam(0).build())
                .putParameters("ignore_eos", InferParameter.newBuilder().setBoolParam(true).build());
    }

    @Test
    void healthAndMetadata() {
        assertThat(stub.serverLive(ServerLiveRequest.getDefaultInstance()).getLive()).isTrue();
        assertThat(stub.serverReady(ServerReadyRequest.getDefaultInstance()).getReady()).isTrue();
        assertThat(stub.modelReady(ModelReadyRequest.newBuilder().setName("tiny").build()).getReady()).isTrue();
        assertThat(stub.serverMetadata(ServerMetadataRequest.getDefaultInstance()).getName()).isEqualTo("lathe");
        var meta = stub.modelMetadata(ModelMetadataRequest.newBuilder().setName("tiny").build());
        assertThat(meta.getInputs(0).getName()).isEqualTo("text_input");
        assertThat(meta.getOutputs(0).getDatatype()).isEqualTo("BYTES");
        assertThatThrownBy(() -> stub.modelMetadata(ModelMetadataRequest.newBuilder().setName("nope").build()))
                .isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND));
    }

    @Test
    void modelInferWithTypedContents() {
        ModelInferResponse r = stub.modelInfer(request("tiny", "Hello", 6).build());
        assertThat(r.getModelName()).isEqualTo("tiny");
        assertThat(r.getId()).isEqualTo("r1");
        assertThat(r.getOutputs(0).getName()).isEqualTo("text_output");
        assertThat(r.getOutputs(0).getShapeList()).containsExactly(1L, 1L);
        assertThat(r.getOutputs(0).getContents().getBytesContents(0).toStringUtf8()).isEqualTo(greedy("Hello", 6));
    }

    @Test
    void modelInferWithRawContentsAnswersRaw() {
        byte[] text = "Once upon".getBytes(StandardCharsets.UTF_8);
        ByteBuffer textRaw = ByteBuffer.allocate(4 + text.length).order(ByteOrder.LITTLE_ENDIAN).putInt(text.length).put(text);
        ByteBuffer maxRaw = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(5);
        var req = ModelInferRequest.newBuilder().setModelName("tiny")
                .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("text_input").setDatatype("BYTES").addShape(1).addShape(1))
                .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("max_tokens").setDatatype("INT32").addShape(1).addShape(1))
                .addRawInputContents(ByteString.copyFrom(textRaw.array()))
                .addRawInputContents(ByteString.copyFrom(maxRaw.array()))
                .putParameters("temperature", InferParameter.newBuilder().setDoubleParam(0).build())
                .putParameters("ignore_eos", InferParameter.newBuilder().setBoolParam(true).build())
                .build();
        ModelInferResponse r = stub.modelInfer(req);
        ByteBuffer out = r.getRawOutputContents(0).asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        byte[] s = new byte[out.getInt()];
        out.get(s);
        assertThat(new String(s, StandardCharsets.UTF_8)).isEqualTo(greedy("Once upon", 5));
        assertThat(out.hasRemaining()).isFalse();
    }

    @Test
    void badRequestsAreInvalidArgument() {
        var noText = ModelInferRequest.newBuilder().setModelName("tiny")
                .addInputs(ModelInferRequest.InferInputTensor.newBuilder().setName("max_tokens").setDatatype("INT32")
                        .setContents(InferTensorContents.newBuilder().addIntContents(3))).build();
        assertThatThrownBy(() -> stub.modelInfer(noText)).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
            assertThat(e.getStatus().getDescription()).contains("text_input");
        });
        assertThatThrownBy(() -> stub.modelInfer(request("tiny", "x", 100000).build()))
                .isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT));
        // and the next request is served
        assertThat(stub.modelInfer(request("tiny", "ok", 2).build()).getOutputsCount()).isEqualTo(1);
    }

    @Test
    void aMissingApiKeyIsUnauthenticated() {
        var bare = GRPCInferenceServiceGrpc.newBlockingStub(channel);
        assertThat(bare.serverLive(ServerLiveRequest.getDefaultInstance()).getLive()).isTrue();
        assertThatThrownBy(() -> bare.modelInfer(request("tiny", "x", 2).build()))
                .isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));
    }

    @Test
    void modelStreamInferStreamsDeltasThenAFinalResponse() throws Exception {
        List<ModelStreamInferResponse> got = new CopyOnWriteArrayList<>();
        var done = new CompletableFuture<Void>();
        StreamObserver<ModelInferRequest> requests = async.modelStreamInfer(new StreamObserver<>() {
            @Override public void onNext(ModelStreamInferResponse r) { got.add(r); }
            @Override public void onError(Throwable t) { done.completeExceptionally(t); }
            @Override public void onCompleted() { done.complete(null); }
        });
        requests.onNext(request("tiny", "The river", 8)
                .putParameters("stream", InferParameter.newBuilder().setBoolParam(true).build()).build());
        requests.onNext(request("nope", "x", 2).build());
        requests.onCompleted();
        done.get(20, TimeUnit.SECONDS);
        var text = new StringBuilder();
        int finals = 0;
        String error = null;
        for (var r : got) {
            if (!r.getErrorMessage().isEmpty()) {
                error = r.getErrorMessage();
                continue;
            }
            text.append(r.getInferResponse().getOutputs(0).getContents().getBytesContents(0).toStringUtf8());
            if (r.getInferResponse().getParametersMap().get("triton_final_response").getBoolParam()) finals++;
        }
        assertThat(text.toString()).isEqualTo(greedy("The river", 8));
        assertThat(finals).isEqualTo(1);
        assertThat(got.size()).isGreaterThan(2);
        assertThat(error).contains("nope");
    }
}
