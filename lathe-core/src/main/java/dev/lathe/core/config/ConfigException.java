package dev.lathe.core.config;

/** A model or generation config that cannot be used; the message names the file and the field. */
public class ConfigException extends IllegalArgumentException {
    public ConfigException(String message) {
        super(message);
    }

    public ConfigException(String message, Throwable cause) {
        super(message, cause);
    }
}
