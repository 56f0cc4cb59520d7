package dev.lathe.core.config;

import java.net.URISyntaxException;
import java.nio.file.Path;

/** The real config.json files under src/test/resources/configs. */
final class TestConfigs {
    private TestConfigs() {}

    static Path dir(String name) {
        try {
            return Path.of(TestConfigs.class.getResource("/configs/" + name).toURI());
        } catch (URISyntaxException | NullPointerException e) {
            throw new IllegalStateException("test resource configs/" + name + " is missing", e);
        }
    }

    static ModelConfig load(String name) {
        return ModelConfigs.load(dir(name));
    }
}
