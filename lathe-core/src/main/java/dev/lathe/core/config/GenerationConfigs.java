package dev.lathe.core.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Reads HF {@code generation_config.json}; fields it does not set stay null. */
public final class GenerationConfigs {
    private static final ObjectMapper JSON = new ObjectMapper();

    private GenerationConfigs() {}

    /** {@code dir/generation_config.json}, or {@link GenerationConfig#EMPTY} when there is none. */
    public static GenerationConfig load(Path dir) {
        Path file = dir.resolve("generation_config.json");
        if (!Files.exists(file)) return GenerationConfig.EMPTY;
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new ConfigException(file + ": not valid JSON (" + e.getMessage() + "); fix or delete the file", e);
        }
        return parse(root, file.toString());
    }

    public static GenerationConfig parse(JsonNode root, String sourceName) {
        if (root == null || !root.isObject()) throw new ConfigException(sourceName + ": not a JSON object");
        ConfigFields f = new ConfigFields(root, sourceName);
        return new GenerationConfig(f.intList("eos_token_id"), f.intOr("bos_token_id", null, null),
                f.intOr("pad_token_id", null, null), f.boolOrNull("do_sample"), f.doubleOrNull("temperature"),
                f.doubleOrNull("top_p"), f.intOr("top_k", null, null), f.doubleOrNull("min_p"),
                f.doubleOrNull("repetition_penalty"), f.intOr("max_new_tokens", null, null));
    }
}
