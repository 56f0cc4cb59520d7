package dev.lathe.core.tokenizer;

/**
 * A chat template refused the conversation (its {@code raise_exception(...)} ran) or could not be
 * rendered. The message is the template's own text, or Jinja's error with its line.
 */
public class ChatTemplateException extends RuntimeException {
    public ChatTemplateException(String message) {
        super(message);
    }

    public ChatTemplateException(String message, Throwable cause) {
        super(message, cause);
    }
}
