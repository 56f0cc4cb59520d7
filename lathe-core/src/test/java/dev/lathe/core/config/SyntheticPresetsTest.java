package dev.lathe.core.config;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SyntheticPresetsTest {

    /** Parameter counts published for the real checkpoints (safetensors totals on their model pages). */
    @Test
    void presetsHaveThePublishedParameterCounts() {
        assertThat(SyntheticPresets.get("llama-3-8b").parameterCount()).isEqualTo(8_030_261_248L);
        assertThat(SyntheticPresets.get("llama-3.1-8b").parameterCount()).isEqualTo(8_030_261_248L);
        assertThat(SyntheticPresets.get("llama-3-70b").parameterCount()).isEqualTo(70_553_706_496L);
        assertThat(SyntheticPresets.get("llama-3.2-1b").parameterCount()).isEqualTo(1_235_814_400L);
        assertThat(SyntheticPresets.get("llama-2-7b").parameterCount()).isEqualTo(6_738_415_616L);
        assertThat(SyntheticPresets.get("qwen2.5-7b").parameterCount()).isEqualTo(7_615_616_512L);
        assertThat(SyntheticPresets.get("qwen3-8b").parameterCount()).isEqualTo(8_190_735_360L);
        assertThat(SyntheticPresets.get("mistral-7b").parameterCount()).isEqualTo(7_241_732_096L);
        assertThat(SyntheticPresets.get("mistral-7b-v0.3").parameterCount()).isEqualTo(7_248_023_552L);
    }

    @Test
    void presetsMatchTheRealConfigs() {
        assertThat(SyntheticPresets.get("llama-3.2-1b")).isEqualTo(TestConfigs.load("Llama-3.2-1B"));
        assertThat(SyntheticPresets.get("qwen3-8b")).isEqualTo(TestConfigs.load("Qwen3-8B"));
        assertThat(SyntheticPresets.get("llama-2-7b")).usingRecursiveComparison().ignoringFields("dtype")
                .isEqualTo(TestConfigs.load("Llama-2-7b-hf"));
        // the instruct model differs from the base preset only in its end-of-turn ids
        assertThat(SyntheticPresets.get("llama-3.1-8b")).usingRecursiveComparison().ignoringFields("eosTokenIds")
                .isEqualTo(TestConfigs.load("Meta-Llama-3.1-8B-Instruct"));
        assertThat(SyntheticPresets.get("mistral-7b-v0.3")).isEqualTo(TestConfigs.load("Mistral-7B-Instruct-v0.3"));
    }

    @Test
    void tinyIsASmallValidLlama() {
        ModelConfig t = SyntheticPresets.get("tiny");
        assertThat(t.architecture()).isEqualTo("LlamaForCausalLM");
        assertThat(t.vocabSize()).isEqualTo(512);
        assertThat(t.hiddenSize()).isEqualTo(128);
        assertThat(t.numHeads()).isEqualTo(4);
        assertThat(t.numKvHeads()).isEqualTo(2);
        assertThat(t.numLayers()).isEqualTo(2);
        assertThat(t.headDim() * t.numHeads()).isEqualTo(t.hiddenSize());
    }

    @Test
    void mistralPresetHasItsSlidingWindow() {
        assertThat(SyntheticPresets.get("mistral-7b").slidingWindow()).isEqualTo(4096);
    }

    @Test
    void unknownPresetListsTheKnownOnes() {
        assertThatThrownBy(() -> SyntheticPresets.get("llama-9b"))
                .isInstanceOf(ConfigException.class)
                .hasMessageContaining("'llama-9b'")
                .hasMessageContaining("tiny").hasMessageContaining("llama-3-8b").hasMessageContaining("qwen2.5-7b");
    }
}
