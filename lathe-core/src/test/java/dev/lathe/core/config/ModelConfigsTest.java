package dev.lathe.core.config;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Defaults per architecture (as transformers applies them), both RoPE formats, and validation errors. */
class ModelConfigsTest {

    private static ModelConfig parse(String arch, String fields) {
        String sep = fields.isBlank() ? "" : ", ";
        return ModelConfigs.parse("{\"architectures\": [\"" + arch + "\"]" + sep + fields + "}", "test/config.json");
    }

    private static org.assertj.core.api.AbstractThrowableAssert<?, ?> fails(String arch, String fields) {
        return assertThatThrownBy(() -> parse(arch, fields)).isInstanceOf(ConfigException.class)
                .hasMessageContaining("test/config.json");
    }

    // ---- defaults ---------------------------------------------------------------------------------

    @Test
    void llamaDefaultsMatchTransformersLlamaConfig() {
        ModelConfig c = parse("LlamaForCausalLM", "");
        assertThat(c.modelType()).isEqualTo("llama");
        assertThat(c.vocabSize()).isEqualTo(32000);
        assertThat(c.hiddenSize()).isEqualTo(4096);
        assertThat(c.intermediateSize()).isEqualTo(11008);
        assertThat(c.numLayers()).isEqualTo(32);
        assertThat(c.numKvHeads()).isEqualTo(32);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(2048);
        assertThat(c.rmsNormEps()).isEqualTo(1e-6);
        assertThat(c.ropeTheta()).isEqualTo(10_000.0);
        assertThat(c.bosTokenId()).isEqualTo(1);
        assertThat(c.eosTokenIds()).containsExactly(2);
        assertThat(c.tieWordEmbeddings()).isFalse();
        assertThat(c.dtype()).isNull();
    }

    @Test
    void mistralDefaultsToEightKvHeadsAndA4096Window() {
        ModelConfig c = parse("MistralForCausalLM", "");
        assertThat(c.numKvHeads()).isEqualTo(8);
        assertThat(c.slidingWindow()).isEqualTo(4096);
        assertThat(c.intermediateSize()).isEqualTo(14336);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(131072);
        // an explicit null means "as many as the query heads" and "no window"
        ModelConfig n = parse("MistralForCausalLM", "\"num_key_value_heads\": null, \"sliding_window\": null");
        assertThat(n.numKvHeads()).isEqualTo(32);
        assertThat(n.slidingWindow()).isZero();
    }

    @Test
    void qwen2DefaultsHaveQkvBiasAndNoTokenIds() {
        ModelConfig c = parse("Qwen2ForCausalLM", "");
        assertThat(c.vocabSize()).isEqualTo(151936);
        assertThat(c.intermediateSize()).isEqualTo(22016);
        assertThat(c.numKvHeads()).isEqualTo(32);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(32768);
        assertThat(c.attentionBias()).isTrue();
        assertThat(c.outputBias()).isFalse();
        assertThat(c.bosTokenId()).isNull();
        assertThat(c.eosTokenIds()).isEmpty();
        // Qwen2 has no attention_bias field: q/k/v bias is always on
        assertThat(parse("Qwen2ForCausalLM", "\"attention_bias\": false").attentionBias()).isTrue();
    }

    @Test
    void qwen3HeadDimDefaultsTo128NotHiddenOverHeads() {
        ModelConfig c = parse("Qwen3ForCausalLM", "\"hidden_size\": 1024, \"num_attention_heads\": 16, \"num_key_value_heads\": 8");
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.qkNorm()).isTrue();
        ModelConfig derived = parse("Qwen3ForCausalLM",
                "\"hidden_size\": 1024, \"num_attention_heads\": 16, \"num_key_value_heads\": 8, \"head_dim\": null");
        assertThat(derived.headDim()).isEqualTo(64);
    }

    @Test
    void explicitHeadDimWinsOverHiddenOverHeads() {
        ModelConfig c = parse("LlamaForCausalLM", "\"hidden_size\": 2048, \"num_attention_heads\": 32, \"head_dim\": 128");
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.qSize()).isEqualTo(4096);
    }

    @Test
    void llamaAttentionAndMlpBiasAreReadAndCounted() {
        String shape = "\"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 3,"
                + " \"num_attention_heads\": 4, \"num_key_value_heads\": 2";
        ModelConfig plain = parse("LlamaForCausalLM", shape);
        ModelConfig biased = parse("LlamaForCausalLM", shape + ", \"attention_bias\": true, \"mlp_bias\": true");
        assertThat(biased.attentionBias()).isTrue();
        assertThat(biased.outputBias()).isTrue();
        assertThat(biased.mlpBias()).isTrue();
        // per layer: q/k/v bias (64 + 32 + 32) + o bias 64 + gate/up bias 2*96 + down bias 64
        assertThat(biased.parameterCount() - plain.parameterCount()).isEqualTo(3L * (128 + 64 + 192 + 64));
        // Mistral has neither field
        assertThat(parse("MistralForCausalLM", "\"attention_bias\": true, \"mlp_bias\": true").attentionBias()).isFalse();
    }

    @Test
    void qwen3AttentionBiasIsRead() {
        assertThat(parse("Qwen3ForCausalLM", "\"attention_bias\": true").attentionBias()).isTrue();
        assertThat(parse("Qwen3ForCausalLM", "").attentionBias()).isFalse();
    }

    @Test
    void eosMayBeAnIntAListOrNull() {
        assertThat(parse("LlamaForCausalLM", "\"eos_token_id\": 7").eosTokenIds()).containsExactly(7);
        assertThat(parse("LlamaForCausalLM", "\"eos_token_id\": [7, 9]").eosTokenIds()).containsExactly(7, 9);
        assertThat(parse("LlamaForCausalLM", "\"eos_token_id\": null").eosTokenIds()).isEmpty();
        assertThat(parse("LlamaForCausalLM", "\"bos_token_id\": null").bosTokenId()).isNull();
        fails("LlamaForCausalLM", "\"eos_token_id\": \"</s>\"").hasMessageContaining("'eos_token_id'");
    }

    @Test
    void dtypeOfTransformers5WinsOverTorchDtype() {
        assertThat(parse("LlamaForCausalLM", "\"torch_dtype\": \"float16\"").dtype()).isEqualTo("float16");
        assertThat(parse("LlamaForCausalLM", "\"dtype\": \"bfloat16\", \"torch_dtype\": \"float16\"").dtype())
                .isEqualTo("bfloat16");
        fails("LlamaForCausalLM", "\"torch_dtype\": \"float8_e4m3fn\"")
                .hasMessageContaining("'torch_dtype'").hasMessageContaining("float8_e4m3fn");
    }

    // ---- sliding windows ---------------------------------------------------------------------------

    @Test
    void qwenSlidingWindowAppliesOnlyWhenEnabledForEveryLayer() {
        String base = "\"num_hidden_layers\": 4, \"use_sliding_window\": true, \"sliding_window\": 1024";
        assertThat(parse("Qwen2ForCausalLM", base + ", \"max_window_layers\": 0").slidingWindow()).isEqualTo(1024);
        assertThat(parse("Qwen2ForCausalLM", base + ", \"max_window_layers\": 4").slidingWindow()).isZero();
        assertThat(parse("Qwen2ForCausalLM", "\"num_hidden_layers\": 4, \"sliding_window\": 1024").slidingWindow()).isZero();
        assertThat(parse("Qwen3ForCausalLM", base
                + ", \"layer_types\": [\"sliding_attention\", \"sliding_attention\", \"sliding_attention\", \"sliding_attention\"]")
                .slidingWindow()).isEqualTo(1024);
        fails("Qwen2ForCausalLM", base + ", \"max_window_layers\": 2")
                .hasMessageContaining("2 of 4 layers use a sliding window");
        fails("Qwen3ForCausalLM", base + ", \"layer_types\": [\"full_attention\"]")
                .hasMessageContaining("'layer_types'").hasMessageContaining("one type per layer (4)");
    }

    // ---- RoPE ------------------------------------------------------------------------------------

    @Test
    void classicRopeScalingAcceptsTypeOrRopeType() {
        ModelConfig linear = parse("LlamaForCausalLM", "\"rope_theta\": 5e5, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
        assertThat(linear.ropeTheta()).isEqualTo(500_000.0);
        assertThat(linear.ropeScaling()).isEqualTo(new RopeScaling(RopeScaling.Type.LINEAR, 2.0, 0, 0, 0));
        ModelConfig dynamic = parse("LlamaForCausalLM", "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4}");
        assertThat(dynamic.ropeScaling().type()).isEqualTo(RopeScaling.Type.DYNAMIC);
        assertThat(dynamic.ropeScaling().factor()).isEqualTo(4.0);
        assertThat(parse("LlamaForCausalLM", "\"rope_scaling\": {\"rope_type\": \"default\"}").ropeScaling())
                .isEqualTo(RopeScaling.NONE);
    }

    @Test
    void transformers5RopeParametersCarryThetaAndScaling() {
        ModelConfig c = parse("MistralForCausalLM",
                "\"rope_parameters\": {\"rope_type\": \"linear\", \"rope_theta\": 1000000.0, \"factor\": 4.0}");
        assertThat(c.ropeTheta()).isEqualTo(1_000_000.0);
        assertThat(c.ropeScaling()).isEqualTo(new RopeScaling(RopeScaling.Type.LINEAR, 4.0, 0, 0, 0));
        ModelConfig plain = parse("Qwen2ForCausalLM", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 250000}");
        assertThat(plain.ropeTheta()).isEqualTo(250_000.0);
        assertThat(plain.ropeScaling()).isEqualTo(RopeScaling.NONE);
    }

    @Test
    void perLayerTypeRopeParametersAreAcceptedWhenAllLayersAgree() {
        ModelConfig c = parse("Qwen3ForCausalLM",
                "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1000000}}");
        assertThat(c.ropeTheta()).isEqualTo(1_000_000.0);
        fails("Qwen3ForCausalLM", "\"rope_parameters\": {\"full_attention\": {\"rope_theta\": 1e6},"
                + " \"sliding_attention\": {\"rope_theta\": 1e4}}")
                .hasMessageContaining("'rope_parameters'").hasMessageContaining("different RoPE parameters per layer type");
    }

    @Test
    void nonNullRopeScalingWinsOverRopeParameters() {
        ModelConfig c = parse("LlamaForCausalLM", "\"rope_theta\": 20000, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2},"
                + " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 30000}");
        assertThat(c.ropeScaling().type()).isEqualTo(RopeScaling.Type.LINEAR);
        assertThat(c.ropeTheta()).isEqualTo(20_000.0);
    }

    @Test
    void llama3RopeFallsBackToMaxPositionsForTheOriginalContext() {
        ModelConfig c = parse("LlamaForCausalLM", "\"max_position_embeddings\": 4096, \"rope_scaling\":"
                + " {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4}");
        assertThat(c.ropeScaling().originalMaxPositionEmbeddings()).isEqualTo(4096);
        fails("LlamaForCausalLM", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": 4}")
                .hasMessageContaining("'rope_scaling.low_freq_factor' is required");
        fails("LlamaForCausalLM", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4,"
                + " \"high_freq_factor\": 4}").hasMessageContaining("must be greater than low_freq_factor");
    }

    @Test
    void unsupportedRopeTypesAreRefusedWithTheSupportedList() {
        fails("Qwen2ForCausalLM", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32768}")
                .hasMessageContaining("'rope_scaling.rope_type' is 'yarn'")
                .hasMessageContaining("supported: default, linear, dynamic, llama3");
        fails("LlamaForCausalLM", "\"rope_parameters\": {\"rope_type\": \"longrope\", \"rope_theta\": 1e4}")
                .hasMessageContaining("'rope_parameters.rope_type' is 'longrope'");
        fails("LlamaForCausalLM", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 0.5}")
                .hasMessageContaining("'rope_scaling.factor' must be at least 1");
        fails("LlamaForCausalLM", "\"partial_rotary_factor\": 0.5").hasMessageContaining("'partial_rotary_factor'");
    }

    // ---- validation ------------------------------------------------------------------------------

    @Test
    void unsupportedArchitectureListsTheSupportedOnes() {
        fails("GPT2LMHeadModel", "").hasMessageContaining("'GPT2LMHeadModel'")
                .hasMessageContaining("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM");
        assertThatThrownBy(() -> ModelConfigs.parse("{\"hidden_size\": 8}", "x/config.json"))
                .hasMessageContaining("x/config.json").hasMessageContaining("'architectures'");
    }

    @Test
    void kvHeadsMustDivideHeads() {
        fails("LlamaForCausalLM", "\"num_attention_heads\": 32, \"num_key_value_heads\": 5")
                .hasMessageContaining("'num_key_value_heads' (5) must divide num_attention_heads (32)");
    }

    @Test
    void hiddenSizeMustSplitIntoHeadsWhenHeadDimIsDerived() {
        fails("MistralForCausalLM", "\"hidden_size\": 1000, \"num_attention_heads\": 32, \"num_key_value_heads\": 8")
                .hasMessageContaining("'hidden_size' (1000) must be divisible by num_attention_heads (32)");
        // with an explicit head_dim, Mistral does not need the split (Llama's config class still checks it)
        assertThat(parse("MistralForCausalLM", "\"hidden_size\": 1000, \"num_attention_heads\": 32,"
                + " \"num_key_value_heads\": 8, \"head_dim\": 128").headDim()).isEqualTo(128);
        fails("LlamaForCausalLM", "\"hidden_size\": 1000, \"num_attention_heads\": 32, \"head_dim\": 128")
                .hasMessageContaining("'hidden_size'");
    }

    @Test
    void sizesMustBePositiveIntegers() {
        fails("LlamaForCausalLM", "\"hidden_size\": 0").hasMessageContaining("'hidden_size' must be positive, got 0");
        fails("LlamaForCausalLM", "\"num_hidden_layers\": -2").hasMessageContaining("'num_hidden_layers' must be positive");
        fails("LlamaForCausalLM", "\"vocab_size\": \"32000\"").hasMessageContaining("'vocab_size' must be an integer");
        fails("LlamaForCausalLM", "\"intermediate_size\": 11008.5").hasMessageContaining("'intermediate_size' must be an integer");
        fails("LlamaForCausalLM", "\"rms_norm_eps\": 0").hasMessageContaining("'rms_norm_eps' must be positive");
        fails("LlamaForCausalLM", "\"rope_theta\": -1").hasMessageContaining("'rope_theta' must be positive");
        fails("LlamaForCausalLM", "\"head_dim\": 33").hasMessageContaining("'head_dim' (33) must be even");
        fails("LlamaForCausalLM", "\"hidden_act\": \"gelu\"").hasMessageContaining("'hidden_act' is 'gelu'");
        fails("LlamaForCausalLM", "\"tie_word_embeddings\": \"yes\"").hasMessageContaining("'tie_word_embeddings' must be true or false");
    }

    @Test
    void invalidJsonNamesTheSource() {
        assertThatThrownBy(() -> ModelConfigs.parse("{\"architectures\": [", "m/config.json"))
                .isInstanceOf(ConfigException.class).hasMessageContaining("m/config.json: not valid JSON");
    }

    @Test
    void missingConfigFileIsAClearError(@TempDir Path dir) {
        assertThatThrownBy(() -> ModelConfigs.load(dir)).isInstanceOf(ConfigException.class)
                .hasMessageContaining(dir.resolve("config.json").toString()).hasMessageContaining("no such file");
    }
}
