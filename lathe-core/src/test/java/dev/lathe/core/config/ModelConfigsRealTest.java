package dev.lathe.core.config;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Published config.json files parse into the shapes the models really have. */
class ModelConfigsRealTest {

    @Test
    void llama2WithoutRopeThetaGetsTheDefault() {
        ModelConfig c = TestConfigs.load("Llama-2-7b-hf");
        assertThat(c.architecture()).isEqualTo("LlamaForCausalLM");
        assertThat(c.modelType()).isEqualTo("llama");
        assertThat(c.vocabSize()).isEqualTo(32000);
        assertThat(c.hiddenSize()).isEqualTo(4096);
        assertThat(c.intermediateSize()).isEqualTo(11008);
        assertThat(c.numLayers()).isEqualTo(32);
        assertThat(c.numHeads()).isEqualTo(32);
        assertThat(c.numKvHeads()).isEqualTo(32);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(4096);
        assertThat(c.rmsNormEps()).isEqualTo(1e-5);
        assertThat(c.ropeTheta()).isEqualTo(10_000.0);
        assertThat(c.ropeScaling()).isEqualTo(RopeScaling.NONE);
        assertThat(c.tieWordEmbeddings()).isFalse();
        assertThat(c.attentionBias()).isFalse();
        assertThat(c.mlpBias()).isFalse();
        assertThat(c.qkNorm()).isFalse();
        assertThat(c.slidingWindow()).isZero();
        assertThat(c.bosTokenId()).isEqualTo(1);
        assertThat(c.eosTokenIds()).containsExactly(2);
        assertThat(c.dtype()).isEqualTo("float16");
        assertThat(c.parameterCount()).isEqualTo(6_738_415_616L);
    }

    @Test
    void llama31InstructHasLlama3RopeAndThreeEosIds() {
        ModelConfig c = TestConfigs.load("Meta-Llama-3.1-8B-Instruct");
        assertThat(c.vocabSize()).isEqualTo(128256);
        assertThat(c.intermediateSize()).isEqualTo(14336);
        assertThat(c.numKvHeads()).isEqualTo(8);
        assertThat(c.queriesPerKvHead()).isEqualTo(4);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(131072);
        assertThat(c.ropeTheta()).isEqualTo(500_000.0);
        assertThat(c.ropeScaling()).isEqualTo(new RopeScaling(RopeScaling.Type.LLAMA3, 8.0, 1.0, 4.0, 8192));
        assertThat(c.bosTokenId()).isEqualTo(128000);
        assertThat(c.eosTokenIds()).containsExactly(128001, 128008, 128009);
        assertThat(c.dtype()).isEqualTo("bfloat16");
        assertThat(c.parameterCount()).isEqualTo(8_030_261_248L);
    }

    @Test
    void llama32OneBTiesEmbeddingsAndSetsHeadDim() {
        ModelConfig c = TestConfigs.load("Llama-3.2-1B");
        assertThat(c.hiddenSize()).isEqualTo(2048);
        assertThat(c.numLayers()).isEqualTo(16);
        assertThat(c.headDim()).isEqualTo(64);
        assertThat(c.tieWordEmbeddings()).isTrue();
        assertThat(c.ropeScaling()).isEqualTo(new RopeScaling(RopeScaling.Type.LLAMA3, 32.0, 1.0, 4.0, 8192));
        assertThat(c.eosTokenIds()).containsExactly(128001);
        assertThat(c.parameterCount()).isEqualTo(1_235_814_400L);
    }

    @Test
    void mistralV03HasNoSlidingWindowWhenItIsNull() {
        ModelConfig c = TestConfigs.load("Mistral-7B-Instruct-v0.3");
        assertThat(c.architecture()).isEqualTo("MistralForCausalLM");
        assertThat(c.vocabSize()).isEqualTo(32768);
        assertThat(c.numKvHeads()).isEqualTo(8);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(32768);
        assertThat(c.ropeTheta()).isEqualTo(1_000_000.0);
        assertThat(c.slidingWindow()).isZero();
        assertThat(c.attentionBias()).isFalse();
        assertThat(c.bosTokenId()).isEqualTo(1);
        assertThat(c.eosTokenIds()).containsExactly(2);
        assertThat(c.parameterCount()).isEqualTo(7_248_023_552L);
    }

    @Test
    void qwen25HasQkvBiasAndNoSlidingWindow() {
        ModelConfig c = TestConfigs.load("Qwen2.5-7B-Instruct");
        assertThat(c.architecture()).isEqualTo("Qwen2ForCausalLM");
        assertThat(c.vocabSize()).isEqualTo(152064);
        assertThat(c.hiddenSize()).isEqualTo(3584);
        assertThat(c.numHeads()).isEqualTo(28);
        assertThat(c.numKvHeads()).isEqualTo(4);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.attentionBias()).isTrue();
        assertThat(c.outputBias()).isFalse();
        assertThat(c.qkNorm()).isFalse();
        assertThat(c.slidingWindow()).isZero(); // sliding_window 131072 is set, but use_sliding_window is false
        assertThat(c.rmsNormEps()).isEqualTo(1e-6);
        assertThat(c.ropeTheta()).isEqualTo(1_000_000.0);
        assertThat(c.bosTokenId()).isEqualTo(151643);
        assertThat(c.eosTokenIds()).containsExactly(151645);
        assertThat(c.parameterCount()).isEqualTo(7_615_616_512L);
    }

    @Test
    void qwen3HasQkNormAndExplicitHeadDim() {
        ModelConfig c = TestConfigs.load("Qwen3-8B");
        assertThat(c.architecture()).isEqualTo("Qwen3ForCausalLM");
        assertThat(c.vocabSize()).isEqualTo(151936);
        assertThat(c.intermediateSize()).isEqualTo(12288);
        assertThat(c.numLayers()).isEqualTo(36);
        assertThat(c.numKvHeads()).isEqualTo(8);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(40960);
        assertThat(c.qkNorm()).isTrue();
        assertThat(c.attentionBias()).isFalse();
        assertThat(c.slidingWindow()).isZero();
        assertThat(c.ropeTheta()).isEqualTo(1_000_000.0);
        assertThat(c.eosTokenIds()).isEqualTo(List.of(151645));
        assertThat(c.parameterCount()).isEqualTo(8_190_735_360L);
    }

    @Test
    void transformers5LlamaConfigParsesLikeTheClassicOne() {
        ModelConfig v5 = TestConfigs.load("Llama-3.1-8B-Instruct-v5");
        assertThat(v5.ropeScaling().type()).isEqualTo(RopeScaling.Type.LLAMA3);
        assertThat(v5).isEqualTo(TestConfigs.load("Meta-Llama-3.1-8B-Instruct"));
    }

    @Test
    void transformers5Qwen3ConfigParsesLikeTheClassicOne() {
        ModelConfig v5 = TestConfigs.load("Qwen3-8B-v5");
        assertThat(v5.dtype()).isEqualTo("bfloat16");
        assertThat(v5).isEqualTo(TestConfigs.load("Qwen3-8B"));
    }
}
