package dev.lathe.server;

import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.helidon.common.Builder;
import io.helidon.webserver.Routing;
import io.helidon.webserver.grpc.GrpcRouting;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * The KServe v2 gRPC service of a {@link LatheServer}: on the HTTP port (HTTP/2, routed by the web server),
 * and optionally on a port of its own. Everything that touches the gRPC libraries lives here, so a server
 * started without gRPC never loads them (and runs where they are not on the class path).
 */
final class GrpcEndpoint {
    private static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

    private final Server server;

    private GrpcEndpoint(Server server) {
        this.server = server;
    }

    /**
     * Binds and starts the service; {@code authorized} judges the authorization metadata (null when absent)
     * of every call but ServerLive and ServerReady.
     */
    static GrpcEndpoint start(LatheServer owner, KServeApi kserve, String host, int port, long maxBodyBytes,
                              Predicate<String> authorized) {
        try {
            Server server = NettyServerBuilder.forAddress(new InetSocketAddress(host, port))
                    .executor(Executors.newVirtualThreadPerTaskExecutor())
                    .maxInboundMessageSize((int) Math.min(Integer.MAX_VALUE, maxBodyBytes))
                    .addService(service(owner, kserve, authorized))
                    .build().start();
            return new GrpcEndpoint(server);
        } catch (IOException e) {
            throw new IllegalStateException("cannot bind gRPC to " + host + ":" + port + ": " + e.getMessage()
                    + "; pick another --grpc-port", e);
        }
    }

    /** The service as a route of the web server, so gRPC clients reach it on the HTTP port. */
    static Builder<?, ? extends Routing> httpRouting(LatheServer owner, KServeApi kserve, Predicate<String> authorized) {
        return GrpcRouting.builder().service(service(owner, kserve, authorized));
    }

    private static ServerServiceDefinition service(LatheServer owner, KServeApi kserve, Predicate<String> authorized) {
        var auth = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                                                              ServerCallHandler<Q, R> next) {
                String method = call.getMethodDescriptor().getBareMethodName();
                boolean open = "ServerLive".equals(method) || "ServerReady".equals(method);
                if (!open && !authorized.test(headers.get(AUTHORIZATION))) {
                    call.close(Status.UNAUTHENTICATED.withDescription("Incorrect or missing API key; send it as"
                            + " 'authorization: Bearer <key>' metadata."), new Metadata());
                    return new ServerCall.Listener<>() { };
                }
                return next.startCall(call, headers);
            }
        };
        return ServerInterceptors.intercept(new GrpcInferenceService(owner, kserve), auth);
    }

    int port() { return server.getPort(); }

    void stop() {
        server.shutdown();
        try {
            if (!server.awaitTermination(2, TimeUnit.SECONDS)) server.shutdownNow();
        } catch (InterruptedException e) {
            server.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }
}
