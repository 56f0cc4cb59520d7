package dev.lathe.core.checkpoint;

/**
 * A checkpoint directory or safetensors file that cannot be used as it is. The message names the file,
 * says what is wrong with it and what to do about it.
 */
public class CheckpointException extends RuntimeException {
    public CheckpointException(String message) {
        super(message);
    }

    public CheckpointException(String message, Throwable cause) {
        super(message, cause);
    }
}
