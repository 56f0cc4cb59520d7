package dev.lathe.server;

import com.fasterxml.jackson.databind.JsonNode;
import io.helidon.http.HeaderNames;
import io.helidon.webserver.http.ServerResponse;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;

/**
 * A server-sent-events response: {@code data: <json>} events, each flushed at once. A write that fails
 * means the client went away; it throws {@link ClientGoneException} so the caller aborts the request.
 */
final class SseStream implements AutoCloseable {
    /** The client closed the connection while events were being sent. */
    static final class ClientGoneException extends RuntimeException {
        ClientGoneException(Throwable cause) {
            super("the client closed the connection", cause);
        }
    }

    private final OutputStream out;
    private boolean closed;

    SseStream(ServerResponse res) {
        res.status(200);
        res.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        res.header(HeaderNames.CACHE_CONTROL, "no-cache");
        this.out = res.outputStream();
    }

    void send(JsonNode event) {
        write(("data: " + Json.MAPPER.valueToTree(event).toString() + "\n\n").getBytes(StandardCharsets.UTF_8));
    }

    void sendRaw(String data) {
        write(("data: " + data + "\n\n").getBytes(StandardCharsets.UTF_8));
    }

    private void write(byte[] bytes) {
        try {
            out.write(bytes);
            out.flush();
        } catch (IOException | UncheckedIOException e) {
            throw new ClientGoneException(e);
        } catch (RuntimeException e) {
            // the web server reports a closed socket with its own unchecked exceptions
            throw new ClientGoneException(e);
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        try {
            out.close();
        } catch (IOException | RuntimeException ignored) {
            // the client is gone; nothing left to tell it
        }
    }
}
