package dev.lathe.cpu.golden;

import dev.lathe.core.generate.GoldenReference;

import dev.lathe.core.checkpoint.Checkpoint;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.cpu.CpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** A checkpoint whose tensors disagree with its config is refused, naming the tensor and both shapes. */
class CheckpointMismatchTest {
    static Path copyFixture(String variant, Path to) throws IOException {
        Path from = GoldenReference.root().resolve(variant);
        try (Stream<Path> files = Files.list(from)) {
            for (Path f : files.toList()) Files.copy(f, to.resolve(f.getFileName()));
        }
        return to;
    }

    @Test
    void tensorShapeDisagreeingWithConfigNamesTensorAndShapes(@TempDir Path dir) throws IOException {
        copyFixture("llama3-bf16", dir);
        Path config = dir.resolve("config.json");
        Files.writeString(config, Files.readString(config).replace("\"intermediate_size\": 160", "\"intermediate_size\": 192")
                .replace("\"intermediate_size\":160", "\"intermediate_size\":192"));
        try (var backend = new CpuBackend(1); Checkpoint ckpt = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> ModelLoader.load(ckpt.config(), ckpt, backend, LoadProgress.NONE))
                    .hasMessageContaining("model.layers.0.mlp.gate_proj.weight")
                    .hasMessageContaining("[160, 64]")
                    .hasMessageContaining("[192, 64]");
        }
    }

    @Test
    void missingTensorIsNamed(@TempDir Path dir) throws IOException {
        copyFixture("llama2-f32", dir);
        Path config = dir.resolve("config.json");
        // the config claims a third layer the weights do not have
        Files.writeString(config, Files.readString(config).replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3")
                .replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":3"));
        try (var backend = new CpuBackend(1); Checkpoint ckpt = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> ModelLoader.load(ckpt.config(), ckpt, backend, LoadProgress.NONE))
                    .hasMessageContaining("model.layers.2.");
        }
    }
}
