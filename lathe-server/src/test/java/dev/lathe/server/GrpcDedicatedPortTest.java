package dev.lathe.server;

import dev.lathe.server.grpc.proto.GRPCInferenceServiceGrpc;
import dev.lathe.server.grpc.proto.ServerLiveRequest;
import dev.lathe.server.grpc.proto.ServerMetadataRequest;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The same gRPC service on a port of its own (--grpc-port), beside the one on the HTTP port; and gRPC off. */
class GrpcDedicatedPortTest {
    @Test
    void aPortOfItsOwnServesTheSameServiceAndKeepsTheKey() throws InterruptedException {
        try (var server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 4)).apiKey("key").port(0)
                .grpcPort(0).build().start()) {
            assertThat(server.grpcPort()).isPositive().isNotEqualTo(server.port());
            var channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.grpcPort()).usePlaintext().build();
            try {
                var stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
                assertThat(stub.serverLive(ServerLiveRequest.getDefaultInstance()).getLive()).isTrue();
                assertThatThrownBy(() -> stub.serverMetadata(ServerMetadataRequest.getDefaultInstance()))
                        .isInstanceOfSatisfying(StatusRuntimeException.class,
                                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));
            } finally {
                channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void withGrpcOffTheHttpPortRefusesGrpcCalls() throws InterruptedException {
        try (var server = LatheServer.builder().model("tiny", TestModels.engine("tiny", 4)).port(0)
                .grpcOnHttpPort(false).build().start()) {
            assertThat(server.grpcPort()).isEqualTo(-1);
            var channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
            try {
                var stub = GRPCInferenceServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
                assertThatThrownBy(() -> stub.serverLive(ServerLiveRequest.getDefaultInstance()))
                        .isInstanceOf(StatusRuntimeException.class);
            } finally {
                channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            }
        }
    }
}
