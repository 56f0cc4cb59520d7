package dev.lathe.core.sampling;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SamplingParamsTest {

    @Test
    void defaultsLeaveEveryFilterAndPenaltyOff() {
        var p = SamplingParams.builder().build();
        assertThat(p.temperature()).isEqualTo(1.0);
        assertThat(p.topP()).isEqualTo(1.0);
        assertThat(p.topK()).isZero();
        assertThat(p.minP()).isZero();
        assertThat(p.repetitionPenalty()).isEqualTo(1.0);
        assertThat(p.presencePenalty()).isZero();
        assertThat(p.frequencyPenalty()).isZero();
        assertThat(p.seed()).isNull();
        assertThat(p.maxTokens()).isNull();
        assertThat(p.stop()).isEmpty();
        assertThat(p.skipSpecialTokens()).isTrue();
        assertThat(p.includeStopStrInOutput()).isFalse();
        assertThat(p.n()).isEqualTo(1);
        assertThat(p.logprobs()).isNull();
        assertThat(p.isGreedy()).isFalse();
        assertThat(SamplingParams.greedy().isGreedy()).isTrue();
    }

    @Test
    void logitBiasIsClampedToOpenAiRange() {
        var p = SamplingParams.builder().logitBias(Map.of(3, 250f, 7, -1000f, 9, 5.5f)).build();
        assertThat(p.logitBias()).containsExactlyInAnyOrderEntriesOf(Map.of(3, 100f, 7, -100f, 9, 5.5f));
    }

    @Test
    void toBuilderRoundTripsEveryField() {
        var p = SamplingParams.builder().temperature(0.3).topP(0.9).topK(40).minP(0.05).repetitionPenalty(1.1)
                .presencePenalty(0.5).frequencyPenalty(-0.5).seed(7L).maxTokens(64).minTokens(3)
                .stop("a", "bc").stopTokenIds(List.of(5)).includeStopStrInOutput(true).ignoreEos(true)
                .skipSpecialTokens(false).logitBias(2, 1.5f).n(3).logprobs(5).build();
        assertThat(p.toBuilder().build()).isEqualTo(p);
    }

    @Test
    void listsAreCopiedSoLaterChangesDoNotLeakIn() {
        var stops = new java.util.ArrayList<>(List.of("x"));
        var p = SamplingParams.builder().stop(stops).build();
        stops.add("y");
        assertThat(p.stop()).containsExactly("x");
        assertThatThrownBy(() -> p.stop().add("z")).isInstanceOf(UnsupportedOperationException.class);
    }

    static Stream<Arguments> invalid() {
        return Stream.of(
                bad(b -> b.temperature(-0.1), "temperature", "-0.1"),
                bad(b -> b.temperature(Double.NaN), "temperature", "NaN"),
                bad(b -> b.topP(0), "topP", "(0, 1]"),
                bad(b -> b.topP(1.01), "topP", "1.01"),
                bad(b -> b.topK(-2), "topK", "-2"),
                bad(b -> b.minP(1.5), "minP", "[0, 1]"),
                bad(b -> b.repetitionPenalty(0), "repetitionPenalty", "> 0"),
                bad(b -> b.presencePenalty(2.5), "presencePenalty", "[-2, 2]"),
                bad(b -> b.frequencyPenalty(-3), "frequencyPenalty", "[-2, 2]"),
                bad(b -> b.maxTokens(0), "maxTokens", ">= 1"),
                bad(b -> b.minTokens(-1), "minTokens", ">= 0"),
                bad(b -> b.maxTokens(3).minTokens(5), "minTokens", "maxTokens=3"),
                bad(b -> b.stop("ok", ""), "stop[1]", "at least one character"),
                bad(b -> b.stopTokenIds(List.of(4, -1)), "stopTokenIds[1]", "-1"),
                bad(b -> b.logitBias(5, Float.NaN), "logitBias[5]", "NaN"),
                bad(b -> b.logitBias(-3, 1f), "logitBias key", "-3"),
                bad(b -> b.n(0), "n", ">= 1"),
                bad(b -> b.logprobs(21), "logprobs", "0..20"));
    }

    private static Arguments bad(Consumer<SamplingParams.Builder> change, String field, String detail) {
        return Arguments.of(change, field, detail);
    }

    @ParameterizedTest(name = "{1}")
    @MethodSource("invalid")
    void invalidValueIsRejectedNamingTheField(Consumer<SamplingParams.Builder> change, String field, String detail) {
        var b = SamplingParams.builder();
        change.accept(b);
        assertThatThrownBy(b::build)
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith(field + " ")
                .hasMessageContaining(detail);
    }

    @Test
    void boundaryValuesAreAccepted() {
        var p = SamplingParams.builder().temperature(0).topP(1).topK(-1).minP(1).presencePenalty(-2)
                .frequencyPenalty(2).maxTokens(1).minTokens(1).logprobs(0).build();
        assertThat(p.topK()).isEqualTo(-1);
        assertThat(Arrays.asList(p.minTokens(), p.maxTokens())).containsExactly(1, 1);
    }
}
