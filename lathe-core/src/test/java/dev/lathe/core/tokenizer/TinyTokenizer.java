package dev.lathe.core.tokenizer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The tiny byte-level BPE tokenizer of src/test/resources/tokenizer/tiny-bpe, copied into a model dir. */
final class TinyTokenizer {
    private TinyTokenizer() {
    }

    static Path tokenizerJson() {
        try {
            return Path.of(TinyTokenizer.class.getResource("/tokenizer/tiny-bpe/tokenizer.json").toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A model dir holding tokenizer.json and, when not null, this tokenizer_config.json text. */
    static Path modelDir(Path dir, String tokenizerConfigJson) {
        try {
            Files.copy(tokenizerJson(), dir.resolve("tokenizer.json"));
            if (tokenizerConfigJson != null) {
                Files.writeString(dir.resolve("tokenizer_config.json"), tokenizerConfigJson);
            }
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static final String LLAMA3_STYLE_CONFIG = """
            {"bos_token": "<|begin_of_text|>",
             "eos_token": {"content": "<|eot_id|>", "lstrip": false, "special": true},
             "chat_template": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\\n\\n{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\\n\\n{% endif %}"}
            """;

    static Tokenizer load(Path dir) {
        return Tokenizer.load(modelDir(dir, LLAMA3_STYLE_CONFIG));
    }

    static String template(String name) {
        try (var in = TinyTokenizer.class.getResourceAsStream("/tokenizer/templates/" + name)) {
            return new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
