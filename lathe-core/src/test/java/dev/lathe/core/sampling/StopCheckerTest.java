package dev.lathe.core.sampling;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class StopCheckerTest {
    private static final int EOS = 2;
    private static final int TOKEN = 100; // any ordinary token id

    private static StopChecker checker(SamplingParams.Builder b) {
        return new StopChecker(b.build(), List.of(EOS));
    }

    /** Feeds ordinary tokens with these text deltas; returns each step's result. */
    private static List<StopChecker.Result> feed(StopChecker c, String... deltas) {
        var out = new ArrayList<StopChecker.Result>();
        for (int i = 0; i < deltas.length; i++) out.add(c.onToken(TOKEN, deltas[i], i + 1));
        return out;
    }

    private static List<String> visible(List<StopChecker.Result> results) {
        return results.stream().map(StopChecker.Result::visibleDelta).toList();
    }

    @Test
    void stopStringSpanningThreeDeltasIsCutAndNeverPartlyStreamed() {
        var c = checker(SamplingParams.builder().stop("<|end|>"));
        var r = feed(c, "Hello <|", "en", "d|> and more");
        assertThat(visible(r)).containsExactly("Hello ", "", "");
        assertThat(r.get(0).finished()).isFalse();
        assertThat(r.get(1).finished()).isFalse();
        assertThat(r.get(2).finishReason()).isEqualTo(FinishReason.STOP);
        assertThat(c.matchedStopString()).isEqualTo("<|end|>");
    }

    @Test
    void includeStopStrInOutputKeepsTheStopStringButNothingAfter() {
        var c = checker(SamplingParams.builder().stop("<|end|>").includeStopStrInOutput(true));
        var r = feed(c, "Hello <|", "en", "d|> and more");
        assertThat(String.join("", visible(r))).isEqualTo("Hello <|end|>");
        assertThat(r.get(2).finishReason()).isEqualTo(FinishReason.STOP);
    }

    @Test
    void heldBackTextIsReleasedOnceItCannotBeAStopString() {
        var c = checker(SamplingParams.builder().stop("###"));
        var r = feed(c, "a #", "#", "b", "c");
        assertThat(visible(r)).containsExactly("a ", "", "##b", "c");
        assertThat(r).noneMatch(StopChecker.Result::finished);
    }

    @Test
    void theStopStringThatEndsFirstWinsWhateverTheSplit() {
        var params = SamplingParams.builder().stop("abcd", "bc");
        assertThat(String.join("", visible(feed(checker(params), "xabcd")))).isEqualTo("xa");
        assertThat(String.join("", visible(feed(checker(params), "xa", "b", "cd")))).isEqualTo("xa");
    }

    @Test
    void eosStopsWithoutShowingItsTextAndReleasesHeldText() {
        var c = checker(SamplingParams.builder().stop("###"));
        c.onToken(TOKEN, "done #", 1);
        var r = c.onToken(EOS, "</s>", 2);
        assertThat(r.visibleDelta()).isEqualTo("#");
        assertThat(r.finishReason()).isEqualTo(FinishReason.STOP);
        assertThat(c.matchedStopTokenId()).isNull();
    }

    @Test
    void ignoreEosTreatsEosAsOrdinaryText() {
        var c = checker(SamplingParams.builder().ignoreEos(true));
        var r = c.onToken(EOS, "</s>", 1);
        assertThat(r.finished()).isFalse();
        assertThat(r.visibleDelta()).isEqualTo("</s>");
    }

    @Test
    void stopTokenIdStopsAndIsReported() {
        var c = checker(SamplingParams.builder().stopTokenIds(List.of(7)));
        assertThat(c.onToken(TOKEN, "x", 1).finished()).isFalse();
        var r = c.onToken(7, "<eot>", 2);
        assertThat(r).isEqualTo(new StopChecker.Result("", FinishReason.STOP));
        assertThat(c.matchedStopTokenId()).isEqualTo(7);
    }

    @Test
    void maxTokensEndsWithLengthAndReleasesEverything() {
        var c = checker(SamplingParams.builder().maxTokens(2).stop("###"));
        var r = feed(c, "a", "b##");
        assertThat(visible(r)).containsExactly("a", "b##");
        assertThat(r.get(1).finishReason()).isEqualTo(FinishReason.LENGTH);
    }

    @Test
    void stopStringCompletedOnTheLastAllowedTokenIsStopNotLength() {
        var c = checker(SamplingParams.builder().maxTokens(2).stop("##"));
        var r = feed(c, "a#", "#b");
        assertThat(visible(r)).containsExactly("a", "");
        assertThat(r.get(1).finishReason()).isEqualTo(FinishReason.STOP);
    }

    @Test
    void nothingButLengthStopsBeforeMinTokens() {
        var c = checker(SamplingParams.builder().minTokens(2).stop("!"));
        assertThat(c.onToken(TOKEN, "hi!", 1)).isEqualTo(new StopChecker.Result("hi!", null));
        assertThat(c.onToken(EOS, "", 2).finished()).isFalse();
        var r = c.onToken(TOKEN, " ok!", 3);
        assertThat(r).isEqualTo(new StopChecker.Result(" ok", FinishReason.STOP));
    }

    @Test
    void finishReleasesHeldTextOnceAndLaterTokensAreRejected() {
        var c = checker(SamplingParams.builder().stop("###"));
        assertThat(c.onToken(TOKEN, "x##", 1).visibleDelta()).isEqualTo("x");
        assertThat(c.finish(FinishReason.ABORT)).isEqualTo(new StopChecker.Result("##", FinishReason.ABORT));
        assertThat(c.finish(FinishReason.LENGTH)).isEqualTo(new StopChecker.Result("", FinishReason.ABORT));
        assertThatThrownBy(() -> c.onToken(TOKEN, "y", 2))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("after the sequence finished");
    }

    @Test
    void finishReasonsUseOpenAiNames() {
        assertThat(FinishReason.STOP.apiName()).isEqualTo("stop");
        assertThat(FinishReason.LENGTH.apiName()).isEqualTo("length");
        assertThat(FinishReason.ABORT.apiName()).isEqualTo("abort");
    }

    @Test
    void matcherWithoutStopStringsPassesTextThrough() {
        var m = new StopStringMatcher(List.of(), false);
        assertThat(m.emit("abc")).isEqualTo("abc");
        assertThat(m.flush()).isEmpty();
    }
}
