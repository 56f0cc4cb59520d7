package dev.lathe.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The parts of HF {@code tokenizer_config.json} (and {@code chat_template.jinja}) that Lathe uses.
 * A missing value is null.
 *
 * @param bosToken     {@code bos_token}, given as a string or as {@code {"content": ...}}
 * @param eosToken     {@code eos_token}, same forms
 * @param addBosToken  {@code add_bos_token} when present: LlamaTokenizerFast rebuilds its
 *                     post-processor from it, so it overrides what tokenizer.json says
 * @param chatTemplate the Jinja source: {@code chat_template.jinja} if present, else
 *                     {@code chat_template} (a string, or the entry named "default" of a list)
 */
public record TokenizerConfig(String bosToken, String eosToken, Boolean addBosToken, String chatTemplate) {

    public static final TokenizerConfig EMPTY = new TokenizerConfig(null, null, null, null);

    static final String CONFIG_FILE = "tokenizer_config.json";
    static final String TEMPLATE_FILE = "chat_template.jinja";

    /** Reads the optional files of {@code modelDir}; missing files give null fields. */
    public static TokenizerConfig read(Path modelDir) {
        Path configFile = modelDir.resolve(CONFIG_FILE);
        TokenizerConfig config = EMPTY;
        if (Files.isRegularFile(configFile)) {
            try {
                config = parse(new ObjectMapper().readTree(configFile.toFile()), configFile);
            } catch (IOException e) {
                throw new UncheckedIOException(configFile + ": cannot read or parse: " + e.getMessage(), e);
            }
        }
        Path templateFile = modelDir.resolve(TEMPLATE_FILE);
        if (Files.isRegularFile(templateFile)) {
            try {
                String template = Files.readString(templateFile, StandardCharsets.UTF_8);
                config = new TokenizerConfig(config.bosToken, config.eosToken, config.addBosToken, template);
            } catch (IOException e) {
                throw new UncheckedIOException(templateFile + ": cannot read: " + e.getMessage(), e);
            }
        }
        return config;
    }

    static TokenizerConfig parse(JsonNode root, Path source) {
        JsonNode addBos = root.get("add_bos_token");
        return new TokenizerConfig(tokenContent(root.get("bos_token")), tokenContent(root.get("eos_token")),
                addBos == null || addBos.isNull() ? null : addBos.asBoolean(),
                chatTemplate(root.get("chat_template"), source));
    }

    private static String tokenContent(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.asText();
        }
        JsonNode content = node.get("content");
        return content == null || content.isNull() ? null : content.asText();
    }

    private static String chatTemplate(JsonNode node, Path source) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.asText();
        }
        if (node.isArray()) {
            for (JsonNode entry : node) {
                if ("default".equals(entry.path("name").asText(null))) {
                    return entry.path("template").asText(null);
                }
            }
            return null; // only named templates (tool_use, rag...): none is the plain chat one
        }
        throw new IllegalArgumentException(source + ": chat_template must be a string or a list of "
                + "{name, template} objects, found " + node.getNodeType());
    }
}
