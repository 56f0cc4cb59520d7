package dev.lathe.core.tokenizer;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class IncrementalDetokenizerTest {

    static Path dir;
    static Tokenizer tok;

    @BeforeContainer
    static void load() throws IOException {
        dir = Files.createTempDirectory("tiny-bpe");
        tok = TinyTokenizer.load(dir);
    }

    @AfterContainer
    static void close() throws IOException {
        tok.close();
        try (var files = Files.walk(dir)) {
            files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    /** Streams {@code generated} token by token; returns the deltas, with flush() as the last one. */
    static List<String> stream(int[] prompt, int[] generated, boolean skipSpecial) {
        IncrementalDetokenizer detok = new IncrementalDetokenizer(tok, prompt, skipSpecial);
        List<String> deltas = new ArrayList<>();
        for (int id : generated) {
            deltas.add(detok.add(id));
        }
        deltas.add(detok.flush());
        return deltas;
    }

    @net.jqwik.api.Example
    void emojiSplitAcrossTokensIsHeldBackUntilComplete() {
        int[] prompt = tok.encode("Hello", true);
        int[] generated = tok.encode(" world 😀!", false);
        List<String> deltas = stream(prompt, generated, true);
        assertThat(deltas).noneMatch(d -> d.contains("\uFFFD"));
        assertThat(deltas).contains("😀");               // the second half releases the whole emoji
        assertThat(String.join("", deltas)).isEqualTo(" world 😀!");
        assertThat(deltas.getLast()).isEmpty();          // nothing left over for flush
    }

    @net.jqwik.api.Example
    void cjkCharacterSplitAcrossTokensComesOutWhole() {
        int[] generated = tok.encode("中文", false);
        List<String> deltas = stream(new int[0], generated, false);
        assertThat(deltas).noneMatch(d -> d.contains("\uFFFD"));
        assertThat(String.join("", deltas)).isEqualTo("中文");
    }

    @net.jqwik.api.Example
    void specialTokensAreSkippedOrKeptAsAsked() {
        int[] generated = tok.encode("Hi<|eot_id|>", false);
        assertThat(String.join("", stream(tok.encode("x", true), generated, true))).isEqualTo("Hi");
        assertThat(String.join("", stream(tok.encode("x", true), generated, false))).isEqualTo("Hi<|eot_id|>");
    }

    @net.jqwik.api.Example
    void incompleteCharacterAtTheEndComesOutOfFlushAsFullDecodeShowsIt() {
        int[] emoji = tok.encode("😀", false);
        int[] generated = {tok.tokenId("Hello").orElseThrow(), emoji[0]};
        IncrementalDetokenizer detok = new IncrementalDetokenizer(tok, new int[0], false);
        assertThat(detok.add(generated[0])).isEqualTo("Hello");
        assertThat(detok.add(generated[1])).isEmpty();
        assertThat("Hello" + detok.flush()).isEqualTo(tok.decode(generated, false));
    }

    @Property(tries = 300)
    void deltasConcatenateToTheFullDecodeAndNeverShowAHalfCharacter(@ForAll("texts") String text,
                                                                    @ForAll("texts") String promptText) {
        int[] prompt = tok.encode(promptText, true);
        int[] generated = tok.encode(text, false);
        for (boolean skipSpecial : new boolean[]{true, false}) {
            List<String> deltas = stream(prompt, generated, skipSpecial);
            assertThat(String.join("", deltas)).isEqualTo(tok.decode(generated, skipSpecial));
            if (!text.contains("\uFFFD")) {
                assertThat(deltas).noneMatch(d -> d.contains("\uFFFD"));
            }
        }
        assertThat(String.join("", stream(prompt, generated, false))).isEqualTo(text);
    }

    @Provide
    Arbitrary<String> texts() {
        Arbitrary<String> anyUnicode = Arbitraries.strings().all().ofMaxLength(40)
                .filter(s -> s.codePoints().noneMatch(cp -> Character.getType(cp) == Character.SURROGATE));
        Arbitrary<String> pieces = Arbitraries.of("Hello", " world", "😀", "中", "文", "é", "👍🏽", " ", "\n",
                "<|eot_id|>", "<tool>", "the", "ing", "a").list().ofMaxSize(30).map(l -> String.join("", l));
        return Arbitraries.oneOf(anyUnicode, pieces, Arbitraries.strings().withCharRange('\u0080', '\uFFFF')
                .ofMaxLength(20).filter(s -> s.chars().noneMatch(c -> Character.isSurrogate((char) c))));
    }
}
