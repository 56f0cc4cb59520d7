package dev.lathe.core.checkpoint;

import dev.lathe.core.config.ConfigException;
import dev.lathe.core.config.GenerationConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class CheckpointTest {
    @TempDir
    Path dir;

    static final String CONFIG = """
            {"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 4, "intermediate_size": 6,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
             "max_position_embeddings": 16, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}
            """;

    private void config() throws IOException {
        Files.writeString(dir.resolve("config.json"), CONFIG);
    }

    private static float[] ramp(int n, float start) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = start + i * 0.25f;
        return v;
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16", "BF16"})
    void singleFileCheckpointOpens(DType dtype) throws IOException {
        config();
        new SafetensorsWriter()
                .add("model.embed_tokens.weight", dtype, new long[]{8, 4}, ramp(32, -4))
                .add("model.norm.weight", dtype, new long[]{4}, ramp(4, 1))
                .write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.dir()).isEqualTo(dir);
            assertThat(c.config().vocabSize()).isEqualTo(8);
            assertThat(c.config().dtype()).isEqualTo("bfloat16");
            assertThat(c.generationConfig()).isEqualTo(GenerationConfig.EMPTY);
            assertThat(c.names()).containsExactly("model.embed_tokens.weight", "model.norm.weight");
            WeightTensor e = c.get("model.embed_tokens.weight");
            assertThat(e.dtype()).isEqualTo(dtype);
            assertThat(e.shape()).containsExactly(8, 4);
            assertThat(SafetensorsTest.floats(e)).containsExactly(ramp(32, -4)); // quarter steps are exact in all three
            assertThat(SafetensorsTest.floats(c.get("model.norm.weight"))).containsExactly(1f, 1.25f, 1.5f, 1.75f);
        }
    }

    private void writeShards() throws IOException {
        new SafetensorsWriter()
                .add("model.embed_tokens.weight", DType.BF16, new long[]{8, 4}, ramp(32, 0))
                .add("model.layers.0.input_layernorm.weight", DType.BF16, new long[]{4}, ramp(4, 1))
                .write(dir.resolve("model-00001-of-00002.safetensors"));
        new SafetensorsWriter()
                .add("model.norm.weight", DType.BF16, new long[]{4}, ramp(4, 2))
                .add("lm_head.weight", DType.BF16, new long[]{8, 4}, ramp(32, -8))
                .write(dir.resolve("model-00002-of-00002.safetensors"));
    }

    private void writeIndex(String secondShardOfNorm) throws IOException {
        Files.writeString(dir.resolve("model.safetensors.index.json"), """
                {"metadata": {"total_size": 144},
                 "weight_map": {
                   "lm_head.weight": "model-00002-of-00002.safetensors",
                   "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                   "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
                   "model.norm.weight": "%s"}}
                """.formatted(secondShardOfNorm));
    }

    @Test
    void shardedCheckpointFindsEachTensorInItsShard() throws IOException {
        config();
        writeShards();
        writeIndex("model-00002-of-00002.safetensors");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.files()).extracting(s -> s.file().getFileName().toString())
                    .containsExactly("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
            assertThat(c.names()).containsExactlyInAnyOrder("model.embed_tokens.weight",
                    "model.layers.0.input_layernorm.weight", "model.norm.weight", "lm_head.weight");
            assertThat(SafetensorsTest.floats(c.get("model.norm.weight"))).containsExactly(2f, 2.25f, 2.5f, 2.75f);
            assertThat(SafetensorsTest.floats(c.get("lm_head.weight"))).containsExactly(ramp(32, -8));
            assertThat(SafetensorsTest.floats(c.get("model.embed_tokens.weight"))).containsExactly(ramp(32, 0));
            assertThat(c.has("model.layers.1.input_layernorm.weight")).isFalse();
        }
    }

    @Test
    void indexTakesPrecedenceOverAStrayModelSafetensors() throws IOException {
        config();
        writeShards();
        writeIndex("model-00002-of-00002.safetensors");
        new SafetensorsWriter().add("stray", DType.F32, new long[]{1}, new float[]{1}).write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.has("stray")).isFalse();
            assertThat(c.files()).hasSize(2);
        }
    }

    @Test
    void withoutIndexOrModelSafetensorsEverySafetensorsFileIsUsed() throws IOException {
        config();
        writeShards();
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.files()).extracting(s -> s.file().getFileName().toString())
                    .containsExactly("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
            assertThat(c.names()).hasSize(4);
        }
    }

    @Test
    void missingTensorErrorNamesTheTensorAndTheFilesSearched() throws IOException {
        config();
        writeShards();
        writeIndex("model-00002-of-00002.safetensors");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> c.get("model.layers.5.mlp.up_proj.weight"))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("'model.layers.5.mlp.up_proj.weight'")
                    .hasMessageContaining(dir.toString())
                    .hasMessageContaining("model-00001-of-00002.safetensors, model-00002-of-00002.safetensors");
        }
    }

    @Test
    void generationConfigIsRead() throws IOException {
        config();
        writeShards();
        Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [3, 4], \"temperature\": 0.6}");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.generationConfig().eosTokenIds()).containsExactly(3, 4);
            assertThat(c.generationConfig().temperature()).isEqualTo(0.6);
        }
    }

    @Test
    void missingDirectoryIsAClearError() {
        Path missing = dir.resolve("no-such-model");
        assertThatThrownBy(() -> Checkpoint.open(missing)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining(missing.toString()).hasMessageContaining("no such directory");
    }

    @Test
    void aFileInsteadOfADirectoryIsAClearError() throws IOException {
        Path file = Files.writeString(dir.resolve("model.safetensors"), "x");
        assertThatThrownBy(() -> Checkpoint.open(file)).hasMessageContaining("not a directory");
    }

    @Test
    void missingConfigIsAClearError() throws IOException {
        writeShards();
        assertThatThrownBy(() -> Checkpoint.open(dir)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining(dir.toString()).hasMessageContaining("no config.json");
    }

    @Test
    void badConfigFailsBeforeAnyWeightIsMapped() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{\"architectures\": [\"GPT2LMHeadModel\"]}");
        assertThatThrownBy(() -> Checkpoint.open(dir)).isInstanceOf(ConfigException.class)
                .hasMessageContaining("config.json").hasMessageContaining("GPT2LMHeadModel");
    }

    @Test
    void directoryWithoutWeightsIsAClearError() throws IOException {
        config();
        assertThatThrownBy(() -> Checkpoint.open(dir)).hasMessageContaining("no model.safetensors.index.json")
                .hasMessageContaining("download");
        Files.writeString(dir.resolve("pytorch_model.bin"), "x");
        assertThatThrownBy(() -> Checkpoint.open(dir)).hasMessageContaining("convert them to safetensors");
    }

    @Test
    void indexNamingAMissingShardIsAClearError() throws IOException {
        config();
        writeShards();
        writeIndex("model-00003-of-00003.safetensors");
        assertThatThrownBy(() -> Checkpoint.open(dir)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model.safetensors.index.json")
                .hasMessageContaining("'model-00003-of-00003.safetensors'").hasMessageContaining("missing shard");
    }

    @Test
    void indexThatDisagreesWithTheShardsIsAClearError() throws IOException {
        config();
        writeShards();
        writeIndex("model-00001-of-00002.safetensors");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .hasMessageContaining("'model.norm.weight' is in model-00001-of-00002.safetensors")
                .hasMessageContaining("it is in model-00002-of-00002.safetensors");
    }

    @Test
    void indexWithoutWeightMapIsAClearError() throws IOException {
        config();
        writeShards();
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"metadata\": {}}");
        assertThatThrownBy(() -> Checkpoint.open(dir)).hasMessageContaining("no 'weight_map'");
    }

    @Test
    void tensorInTwoFilesIsAClearError() throws IOException {
        config();
        writeShards();
        new SafetensorsWriter().add("model.norm.weight", DType.F32, new long[]{4}, new float[4])
                .write(dir.resolve("extra.safetensors"));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .hasMessageContaining("'model.norm.weight' is in both")
                .hasMessageContaining("extra.safetensors").hasMessageContaining("model-00002-of-00002.safetensors");
    }

    @Test
    void corruptShardErrorNamesTheShard() throws IOException {
        config();
        writeShards();
        Path bad = dir.resolve("model-00002-of-00002.safetensors");
        byte[] bytes = Files.readAllBytes(bad);
        Files.write(bad, java.util.Arrays.copyOf(bytes, bytes.length - 2));
        writeIndex("model-00002-of-00002.safetensors");
        assertThatThrownBy(() -> Checkpoint.open(dir)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining(bad.toString()).hasMessageContaining("truncated");
    }

    @Test
    void closingReleasesEveryShard() throws IOException {
        config();
        writeShards();
        Checkpoint c = Checkpoint.open(dir);
        List<WeightTensor> tensors = c.names().stream().map(c::get).toList();
        c.close();
        for (WeightTensor t : tensors) {
            assertThatThrownBy(() -> t.data().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0))
                    .isInstanceOf(IllegalStateException.class);
        }
    }
}
