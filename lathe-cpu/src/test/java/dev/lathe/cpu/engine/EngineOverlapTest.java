package dev.lathe.cpu.engine;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.cpu.CpuBackend;
import dev.lathe.cpu.RecordingGraphBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

import static dev.lathe.cpu.engine.EngineEndToEndTest.BLOCK;
import static dev.lathe.cpu.engine.EngineEndToEndTest.EOS;
import static dev.lathe.cpu.engine.EngineEndToEndTest.MAX_LEN;
import static dev.lathe.cpu.engine.EngineEndToEndTest.alone;
import static dev.lathe.cpu.engine.EngineEndToEndTest.collect;
import static dev.lathe.cpu.engine.EngineEndToEndTest.config;
import static dev.lathe.cpu.engine.EngineEndToEndTest.params;
import static dev.lathe.cpu.engine.EngineEndToEndTest.prompts;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * With {@link LlmEngine#OVERLAP_PROPERTY}: steps of plain greedy rows are launched before the previous step's
 * picks are processed, their last tokens fed from the previous picks on the backend. Every request still gets
 * exactly the tokens it gets alone, with graphs, prefix caching, preemption, stops and rows that need the host
 * mixed in.
 */
class EngineOverlapTest {
    private String before;
    private RecordingGraphBackend recording;
    private LlamaModel graphModel;

    @BeforeAll
    static void reference() {
        EngineEndToEndTest.load();  // the 64 prompts, their parameters and each one's tokens alone
    }

    @AfterAll
    static void release() {
        EngineEndToEndTest.close();
    }

    @BeforeEach
    void overlapOn() {
        before = System.getProperty(LlmEngine.OVERLAP_PROPERTY);
        System.setProperty(LlmEngine.OVERLAP_PROPERTY, "true");
        recording = new RecordingGraphBackend(new CpuBackend(2));
        graphModel = ModelLoader.synthetic(EngineEndToEndTest.model.config(), recording, DType.BF16, 11, LoadProgress.NONE);
    }

    @AfterEach
    void restore() {
        graphModel.close();
        recording.close();
        if (before == null) System.clearProperty(LlmEngine.OVERLAP_PROPERTY);
        else System.setProperty(LlmEngine.OVERLAP_PROPERTY, before);
    }

    private long preemptions;  // of the last run

    private List<int[]> run(EngineConfig c, Function<Integer, SamplingParams> paramsOf) {
        try (var e = new LlmEngine("tiny", graphModel, null, EOS, c)) {
            var streams = new ArrayList<RequestStream>();
            for (int i = 0; i < 64; i++) streams.add(e.submit(new EngineRequest("o" + i, prompts.get(i), paramsOf.apply(i), null)));
            var got = new ArrayList<int[]>();
            for (var s : streams) got.add(collect(s));
            EngineEndToEndTest.awaitIdle(e);
            assertThat(e.stats().kvBlocksUsed()).as("every block released").isZero();
            preemptions = e.stats().preemptions();
            return got;
        } catch (InterruptedException ex) {
            throw new AssertionError(ex);
        }
    }

    private static void assertSameAsAlone(List<int[]> got) {
        for (int i = 0; i < 64; i++) {
            assertThat(got.get(i)).as("request %d (prompt %d tokens)", i, prompts.get(i).length).isEqualTo(alone.get(i));
        }
    }

    @Test
    void greedyStepsRunAheadAndMatchEachAlone() {
        assertSameAsAlone(run(config(512, true), params::get));
        assertThat(recording.asyncPicks()).as("steps launched ahead of their outputs").isPositive();
        assertThat(recording.forwardedTokens()).as("tokens fed from the previous step's picks").isPositive();
        assertThat(recording.replays()).as("decode steps as graph replays").isPositive();
    }

    @Test
    void runningAheadSurvivesPreemptionUnderATinyCache() {
        assertSameAsAlone(run(config(MAX_LEN / BLOCK + 2, true), params::get));
        assertThat(preemptions).as("the tiny pool forces preemption").isPositive();
        assertThat(recording.forwardedTokens()).isPositive();
    }

    @Test
    void runningAheadWithoutPrefixCachingMatchesEachAlone() {
        assertSameAsAlone(run(config(512, false), params::get));
        assertThat(recording.forwardedTokens()).isPositive();
    }

    /**
     * A stop token ends requests mid-way: the step the engine launched past it for them is dropped, and each
     * request's tokens are those the engine gives without running ahead.
     */
    @Test
    void stopsFoundOneStepLateDropTheExtraToken() {
        Function<Integer, SamplingParams> stopping = i -> {
            int[] a = alone.get(i);
            if (a.length < 3) return params.get(i);
            return params.get(i).toBuilder().stopTokenIds(List.of(a[a.length / 2])).build();
        };
        List<int[]> reference;
        System.setProperty(LlmEngine.OVERLAP_PROPERTY, "false");
        try (var e = new LlmEngine("tiny", EngineEndToEndTest.model, null, EOS, config(512, true))) {
            var streams = new ArrayList<RequestStream>();
            for (int i = 0; i < 64; i++) streams.add(e.submit(new EngineRequest("s" + i, prompts.get(i), stopping.apply(i), null)));
            reference = new ArrayList<>();
            for (var st : streams) reference.add(collect(st));
        } finally {
            System.setProperty(LlmEngine.OVERLAP_PROPERTY, "true");
        }
        List<int[]> got = run(config(512, true), stopping);
        int endedEarly = 0;
        for (int i = 0; i < 64; i++) {
            assertThat(got.get(i)).as("request %d", i).isEqualTo(reference.get(i));
            if (got.get(i).length < alone.get(i).length) endedEarly++;
        }
        assertThat(endedEarly).as("requests a stop token ended early").isPositive();
        assertThat(recording.forwardedTokens()).isPositive();
    }

    /**
     * A pick of -1 (a logits row that held a NaN) ends only its own request: the step that took it as an input
     * token runs for everyone else, who still get exactly their tokens alone.
     */
    @Test
    void aNaNPickEndsOnlyItsOwnRequest() throws Exception {
        var poisoning = new dev.lathe.core.backend.ForwardingBackend(new CpuBackend(2)) {
            int calls;

            @Override
            public PendingTokens argmaxRowsAsync(dev.lathe.core.backend.Tensor x) {
                PendingTokens real = super.argmaxRowsAsync(x);
                if (++calls != 12) return real;
                int[] ids = real.await();
                real.close();
                ids[0] = -1;  // row 0 of the 12th step launched ahead held a NaN
                var t = upload(ids, 1, ids.length);
                return new PendingTokens() {
                    @Override public dev.lathe.core.backend.Tensor tokens() { return t; }
                    @Override public int[] await() { return ids.clone(); }
                    @Override public void close() { t.close(); }
                };
            }
        };
        try (var m = ModelLoader.synthetic(EngineEndToEndTest.model.config(), poisoning, DType.BF16, 11, LoadProgress.NONE);
             var e = new LlmEngine("tiny", m, null, EOS, config(512, true))) {
            var streams = new ArrayList<RequestStream>();
            for (int i = 0; i < 64; i++) streams.add(e.submit(new EngineRequest("n" + i, prompts.get(i), params.get(i), null)));
            int failed = 0;
            for (int i = 0; i < 64; i++) {
                var ids = new ArrayList<Integer>();
                dev.lathe.core.engine.RequestOutput o;
                while ((o = streams.get(i).poll(60, java.util.concurrent.TimeUnit.SECONDS)) != null) {
                    for (int t : o.tokenIds()) ids.add(t);
                }
                if (streams.get(i).error() != null) {
                    failed++;
                    assertThat(streams.get(i).error()).hasMessageContaining("NaN");
                    continue;
                }
                assertThat(ids.stream().mapToInt(Integer::intValue).toArray()).as("request %d", i).isEqualTo(alone.get(i));
            }
            assertThat(poisoning.calls).as("steps launched ahead").isGreaterThanOrEqualTo(12);
            assertThat(failed).as("requests ended by the NaN pick").isEqualTo(1);
            EngineEndToEndTest.awaitIdle(e);
            assertThat(e.stats().kvBlocksUsed()).isZero();
        }
    }

    /**
     * A budget of 6 tokens a step: sequences holding a placeholder are often left out of the next step, and a
     * tiny cache preempts them while their pick is on its way.
     */
    @Test
    void placeholdersLeftOutOfAStepOrPreemptedKeepTheirTokens() {
        var small = new EngineConfig(16, 6, BLOCK, MAX_LEN / BLOCK + 2, MAX_LEN, 1000, true, DType.F32);
        assertSameAsAlone(run(small, params::get));
        assertThat(preemptions).as("the tiny pool forces preemption").isPositive();
        assertThat(recording.forwardedTokens()).isPositive();
    }

    /** One or two tokens: a pick that is a sequence's last by length gets no placeholder, and nothing runs past it. */
    @Test
    void shortRequestsEndWithoutAStepPastTheirLastToken() {
        List<int[]> got = run(config(512, true), i -> params.get(i).toBuilder().maxTokens(1 + i % 2).build());
        for (int i = 0; i < 64; i++) {
            int[] want = alone.get(i);
            assertThat(got.get(i)).as("request %d", i).isEqualTo(java.util.Arrays.copyOf(want, Math.min(1 + i % 2, want.length)));
        }
        assertThat(recording.forwardedTokens()).as("two-token requests take their second token ahead").isPositive();
    }

    /** Two greedy samples a request: the fork step waits for the host, the samples' later steps run ahead. */
    @Test
    void greedySamplesRunAheadAfterTheirFork() throws Exception {
        try (var e = new LlmEngine("tiny", graphModel, null, EOS, config(512, true))) {
            EngineEndToEndTest.runTwoSamplesEach(e, "f");
            EngineEndToEndTest.awaitIdle(e);
            assertThat(e.stats().kvBlocksUsed()).isZero();
        }
        assertThat(recording.forwardedTokens()).isPositive();
    }

    /** Requests aborted while their picks are in flight free everything; the others keep their tokens. */
    @Test
    void abortsWhileAPickIsInFlightLeaveTheOthersAlone() throws Exception {
        try (var e = new LlmEngine("tiny", graphModel, null, EOS, config(512, true))) {
            var streams = new ArrayList<RequestStream>();
            for (int i = 0; i < 64; i++) streams.add(e.submit(new EngineRequest("a" + i, prompts.get(i), params.get(i), null)));
            var first = new java.util.HashMap<Integer, int[]>();
            for (int i = 0; i < 64; i += 5) {
                // at least one delta in, then abort
                first.put(i, streams.get(i).poll(60, java.util.concurrent.TimeUnit.SECONDS).tokenIds());
                streams.get(i).abort();
            }
            for (int i = 0; i < 64; i++) {
                int[] got = collect(streams.get(i));
                if (i % 5 == 0) {
                    // what arrived before the abort is a prefix of the request's tokens alone
                    int[] head = first.get(i);
                    int[] all = java.util.Arrays.copyOf(head, head.length + got.length);
                    System.arraycopy(got, 0, all, head.length, got.length);
                    int[] want = alone.get(i);
                    assertThat(all.length).isLessThanOrEqualTo(want.length);
                    assertThat(all).as("request %d, aborted", i).isEqualTo(java.util.Arrays.copyOf(want, all.length));
                } else {
                    assertThat(got).as("request %d", i).isEqualTo(alone.get(i));
                }
            }
            EngineEndToEndTest.awaitIdle(e);
            assertThat(e.stats().kvBlocksUsed()).as("every block released").isZero();
        }
        assertThat(recording.forwardedTokens()).isPositive();
    }

    /** Rows that need the whole logits row (logprobs, a logit bias) make their steps wait; the others run ahead. */
    @Test
    void stepsWithRowsForTheHostWaitAndStillMatch() {
        assertSameAsAlone(run(config(512, true), i -> switch (i % 4) {
            case 1 -> params.get(i).toBuilder().logprobs(1).build();
            case 2 -> params.get(i).toBuilder().logitBias(java.util.Map.of(3, 0f)).build();
            default -> params.get(i);
        }));
        assertThat(recording.forwardedTokens()).isPositive();
    }
}
