package dev.lathe.core.config;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class GenerationConfigsTest {

    @Test
    void qwenGenerationConfigHasTwoEosIdsAndSamplingDefaults() {
        GenerationConfig g = GenerationConfigs.load(TestConfigs.dir("Qwen2.5-7B-Instruct"));
        assertThat(g.eosTokenIds()).containsExactly(151645, 151643);
        assertThat(g.bosTokenId()).isEqualTo(151643);
        assertThat(g.padTokenId()).isEqualTo(151643);
        assertThat(g.doSample()).isTrue();
        assertThat(g.temperature()).isEqualTo(0.7);
        assertThat(g.topP()).isEqualTo(0.8);
        assertThat(g.topK()).isEqualTo(20);
        assertThat(g.repetitionPenalty()).isEqualTo(1.05);
        assertThat(g.minP()).isNull();
        assertThat(g.maxNewTokens()).isNull();
    }

    @Test
    void llama2GenerationConfigHasASingleEosId() {
        GenerationConfig g = GenerationConfigs.load(TestConfigs.dir("Llama-2-7b-hf"));
        assertThat(g.eosTokenIds()).containsExactly(2);
        assertThat(g.padTokenId()).isZero();
        assertThat(g.temperature()).isEqualTo(0.6);
        assertThat(g.topP()).isEqualTo(0.9);
        assertThat(g.topK()).isNull();
    }

    @Test
    void missingFileGivesTheEmptyConfig(@TempDir Path dir) {
        assertThat(GenerationConfigs.load(dir)).isEqualTo(GenerationConfig.EMPTY);
    }

    @Test
    void badFilesAreClearErrors(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("generation_config.json");
        Files.writeString(file, "{\"temperature\": ");
        assertThatThrownBy(() -> GenerationConfigs.load(dir)).isInstanceOf(ConfigException.class)
                .hasMessageContaining(file.toString()).hasMessageContaining("not valid JSON");
        Files.writeString(file, "{\"top_k\": \"forty\"}");
        assertThatThrownBy(() -> GenerationConfigs.load(dir)).isInstanceOf(ConfigException.class)
                .hasMessageContaining(file.toString()).hasMessageContaining("'top_k' must be an integer");
    }
}
