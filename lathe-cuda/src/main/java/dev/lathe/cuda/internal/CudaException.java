package dev.lathe.cuda.internal;

/** A CUDA driver or cuBLASLt call that returned an error: the function, the code and its name. */
public final class CudaException extends RuntimeException {
    private final String function;
    private final int code;

    public CudaException(String function, int code, String name, String description) {
        super(function + " failed: " + name + " (" + code + ")" + (description == null ? "" : ": " + description));
        this.function = function;
        this.code = code;
    }

    public String function() { return function; }

    public int code() { return code; }
}
