package dev.lathe.core.tokenizer;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class TokenizerTest {

    @TempDir
    static Path dir;
    static Tokenizer tok;
    static int bos;

    @BeforeAll
    static void load() {
        tok = TinyTokenizer.load(dir);
        bos = tok.tokenId("<|begin_of_text|>").orElseThrow();
    }

    @AfterAll
    static void close() {
        tok.close();
    }

    @Test
    void encodesWithMergesAndAddsBosFromPostProcessor() {
        int[] ids = tok.encode("Hello world", true);
        assertThat(ids).containsExactly(bos, tok.tokenId("Hello").orElseThrow(), tok.tokenId("Ġworld").orElseThrow());
        assertThat(tok.encode("Hello world", false))
                .containsExactly(tok.tokenId("Hello").orElseThrow(), tok.tokenId("Ġworld").orElseThrow());
    }

    @Test
    void bosInTheTextIsNotAddedTwiceWithoutSpecialTokens() {
        int[] ids = tok.encode("<|begin_of_text|>Hello", false);
        assertThat(ids).containsExactly(bos, tok.tokenId("Hello").orElseThrow());
        assertThat(tok.encode("<|begin_of_text|>Hello", true)).startsWith(bos, bos); // as HF does
    }

    @Test
    void chatPromptHoldsExactlyOneBos() {
        int[] ids = tok.encodeChat(List.of(ChatMessage.user("Hello")), true);
        assertThat(java.util.Arrays.stream(ids).filter(id -> id == bos).count()).isEqualTo(1);
        assertThat(ids[0]).isEqualTo(bos);
        assertThat(tok.decode(ids, false)).isEqualTo(
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    @Test
    void roundTripsAsciiAndMultiByteText() {
        for (String text : List.of("Hello world", "the thing is an\n\nending", "é café", "中文 text",
                "emoji 😀 and 👍🏽 done", "  leading and trailing  ", "")) {
            assertThat(tok.decode(tok.encode(text, false), false)).as(text).isEqualTo(text);
            assertThat(tok.decode(tok.encode(text, true), true)).as(text).isEqualTo(text);
        }
    }

    @Test
    void emojiSplitsIntoTwoHalfTokensThatDecodeToReplacementAlone() {
        int[] ids = tok.encode("😀", false);
        assertThat(ids).hasSize(2);
        assertThat(tok.decode(new int[]{ids[0]}, false)).contains("\uFFFD");
        assertThat(tok.decode(ids, false)).isEqualTo("😀");
    }

    @Test
    void specialTokensAreSkippedOnRequestButOtherAddedTokensStay() {
        int eot = tok.tokenId("<|eot_id|>").orElseThrow();
        int toolTag = tok.tokenId("<tool>").orElseThrow();
        int[] ids = tok.encode("Hello<|eot_id|><tool>", false);
        assertThat(ids).containsExactly(tok.tokenId("Hello").orElseThrow(), eot, toolTag);
        assertThat(tok.decode(ids, false)).isEqualTo("Hello<|eot_id|><tool>");
        assertThat(tok.decode(ids, true)).isEqualTo("Hello<tool>");
        assertThat(tok.isSpecial(eot)).isTrue();
        assertThat(tok.isSpecial(toolTag)).isFalse();
        assertThat(tok.isSpecial(tok.tokenId("Hello").orElseThrow())).isFalse();
    }

    @Test
    void vocabularyLookupsAgreeWithEachOther() {
        assertThat(tok.vocabSize()).isEqualTo(tok.tokenId("<tool>").orElseThrow() + 1);
        for (int id = 0; id < tok.vocabSize(); id++) {
            assertThat(tok.tokenId(tok.tokenString(id))).hasValue(id);
        }
        assertThat(tok.tokenString(tok.tokenId("Ġthe").orElseThrow())).isEqualTo("Ġthe");
        assertThat(tok.tokenId("not-a-token")).isEmpty();
        assertThatThrownBy(() -> tok.tokenString(tok.vocabSize())).hasMessageContaining("not in the vocabulary");
    }

    @Test
    void bosAndEosComeFromTokenizerConfigInBothForms() {
        assertThat(tok.bosTokenId()).isEqualTo(bos);
        assertThat(tok.eosTokenIds()).containsExactly(tok.tokenId("<|eot_id|>").orElseThrow());
        assertThat(tok.chatTemplate()).isPresent();
    }

    @Test
    void missingTokenizerJsonIsAClearError(@TempDir Path empty) {
        assertThatThrownBy(() -> Tokenizer.load(empty))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(empty.resolve("tokenizer.json").toString())
                .hasMessageContaining("not found");
    }

    @Test
    void worksWithoutTokenizerConfig(@TempDir Path d) {
        try (Tokenizer t = Tokenizer.load(TinyTokenizer.modelDir(d, null))) {
            assertThat(t.bosTokenId()).isNull();
            assertThat(t.eosTokenIds()).isEmpty();
            assertThat(t.chatTemplate()).isEmpty();
            assertThat(t.encode("Hello", true)[0]).isEqualTo(bos); // the post-processor still adds it
        }
    }

    @Test
    void addBosTokenFalseInConfigOverridesThePostProcessor(@TempDir Path d) {
        String config = """
                {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": false}""";
        try (Tokenizer t = Tokenizer.load(TinyTokenizer.modelDir(d, config))) {
            assertThat(t.encode("Hello", true)).containsExactly(t.tokenId("Hello").orElseThrow());
            assertThat(t.eosTokenIds()).containsExactly(t.tokenId("<|end_of_text|>").orElseThrow());
        }
    }

    @Test
    void chatTemplateJinjaFileWinsOverConfigAndDefaultIsPickedFromAList(@TempDir Path d) throws Exception {
        String config = """
                {"bos_token": "<|begin_of_text|>", "chat_template": [
                  {"name": "tool_use", "template": "TOOLS"},
                  {"name": "default", "template": "DEFAULT {{ messages[0].content }}"}]}""";
        try (Tokenizer t = Tokenizer.load(TinyTokenizer.modelDir(d, config))) {
            assertThat(t.chatTemplate().orElseThrow().render(List.of(ChatMessage.user("x")), false))
                    .isEqualTo("DEFAULT x");
        }
        Files.writeString(d.resolve("chat_template.jinja"), "FILE {{ messages[0].content }}\n");
        try (Tokenizer t = Tokenizer.load(d)) {
            assertThat(t.chatTemplate().orElseThrow().render(List.of(ChatMessage.user("x")), false))
                    .isEqualTo("FILE x");
        }
    }

    @Test
    void unknownIdInDecodeIsAClearError() {
        assertThatThrownBy(() -> tok.decode(new int[]{1, 99999}, false))
                .hasMessageContaining("99999").hasMessageContaining("position 1");
    }
}
