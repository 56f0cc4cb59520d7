package dev.lathe.server;

/**
 * A request that cannot be served, with what the client gets: the HTTP status, a message saying what
 * was wrong and what to do, and (OpenAI error shape) the offending parameter and a machine-readable code.
 * {@code retryAfterSeconds > 0} adds a {@code Retry-After} header.
 */
public final class ApiException extends RuntimeException {
    private final int status;
    private final String type;
    private final String param;
    private final String code;
    private final int retryAfterSeconds;

    public ApiException(int status, String type, String message, String param, String code, int retryAfterSeconds) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
        this.retryAfterSeconds = retryAfterSeconds;
    }

    /** 400 invalid_request_error naming {@code param}. */
    public static ApiException badRequest(String message, String param) {
        return new ApiException(400, "invalid_request_error", message, param, null, 0);
    }

    public static ApiException badRequest(String message, String param, String code) {
        return new ApiException(400, "invalid_request_error", message, param, code, 0);
    }

    public static ApiException modelNotFound(String model) {
        return new ApiException(404, "invalid_request_error", "The model `" + model
                + "` does not exist; GET /v1/models lists the models this server serves.", "model", "model_not_found", 0);
    }

    public static ApiException notFound(String message) {
        return new ApiException(404, "invalid_request_error", message, null, "not_found", 0);
    }

    public static ApiException overloaded(String message, int retryAfterSeconds) {
        return new ApiException(429, "rate_limit_error", message, null, "rate_limit_exceeded", Math.max(1, retryAfterSeconds));
    }

    public static ApiException unavailable(String message) {
        return new ApiException(503, "server_error", message, null, "service_unavailable", 0);
    }

    public static ApiException internal(String message) {
        return new ApiException(500, "server_error", message, null, null, 0);
    }

    public int status() { return status; }

    public String type() { return type; }

    public String param() { return param; }

    public String code() { return code; }

    public int retryAfterSeconds() { return retryAfterSeconds; }
}
