package dev.lathe.cpu.engine;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.RopeScaling;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.EngineOverloadedException;
import dev.lathe.core.engine.EngineRequest;
import dev.lathe.core.engine.LLM;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.engine.RequestOutput;
import dev.lathe.core.engine.RequestStream;
import dev.lathe.core.generate.Generator;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.sampling.FinishReason;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.cpu.CpuBackend;
import dev.lathe.cpu.RecordingGraphBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The engine on the CPU backend gives each request exactly the tokens it gets alone (one sequence through
 * the plain generator), however requests are batched, chunked, served from the prefix cache or preempted.
 */
class EngineEndToEndTest {
    static final int VOCAB = 97, MAX_LEN = 128, BLOCK = 4;
    static final List<Integer> EOS = List.of(2);
    static CpuBackend backend;
    static LlamaModel model;
    static List<int[]> prompts;
    static List<SamplingParams> params;
    static List<int[]> alone;

    @BeforeAll
    static void load() {
        backend = new CpuBackend(2);
        var config = new ModelConfig("LlamaForCausalLM", "llama", VOCAB, 48, 80, 2, 4, 2, 16, 512, 1e-6, 10000,
                RopeScaling.NONE, false, false, false, false, 0, 1, EOS, "bfloat16");
        model = ModelLoader.synthetic(config, backend, DType.BF16, 11, LoadProgress.NONE);
        // 64 requests: 8 groups share a 13-token prefix (3 full blocks and a partial one), lengths 1..60
        var r = new Random(5);
        prompts = new ArrayList<>();
        params = new ArrayList<>();
        int[][] prefixes = new int[8][];
        for (int g = 0; g < 8; g++) prefixes[g] = tokens(r, 13);
        for (int i = 0; i < 64; i++) {
            int[] p = i % 2 == 0 ? concat(prefixes[i % 8], tokens(r, r.nextInt(40))) : tokens(r, 1 + r.nextInt(60));
            prompts.add(p);
            params.add(SamplingParams.builder().temperature(0).maxTokens(1 + r.nextInt(24)).ignoreEos(i % 3 != 0).build());
        }
        alone = new ArrayList<>();
        try (var runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(MAX_LEN, 1, BLOCK, DType.F32))) {
            var gen = new Generator(runner, null, EOS);
            for (int i = 0; i < 64; i++) alone.add(gen.generate(prompts.get(i), params.get(i), s -> { }).outputIds());
        }
    }

    @AfterAll
    static void close() {
        model.close();
        backend.close();
    }

    static int[] tokens(Random r, int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = 3 + r.nextInt(VOCAB - 3);
        return t;
    }

    static int[] concat(int[] a, int[] b) {
        int[] c = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    static EngineConfig config(int numBlocks, boolean prefixCaching) {
        return new EngineConfig(16, 48, BLOCK, numBlocks, MAX_LEN, 1000, prefixCaching, DType.F32);
    }

    LlmEngine engine(EngineConfig c) {
        return new LlmEngine("tiny", model, null, EOS, c);
    }

    /** Submits all 64 at once and returns each request's tokens (sample 0). */
    static List<int[]> runAll(LlmEngine e) {
        var out = new ArrayList<int[]>();
        var streams = new ArrayList<RequestStream>();
        for (int i = 0; i < 64; i++) streams.add(e.submit(new EngineRequest("r" + i, prompts.get(i), params.get(i), null)));
        for (var s : streams) out.add(collect(s));
        return out;
    }

    static int[] collect(RequestStream s) {
        var ids = new ArrayList<Integer>();
        try {
            RequestOutput o;
            while ((o = s.poll(60, TimeUnit.SECONDS)) != null) {
                for (int t : o.tokenIds()) ids.add(t);
            }
        } catch (InterruptedException ex) {
            throw new AssertionError(ex);
        }
        assertThat(s.isDone()).as("stream of %s ended", s.requestId()).isTrue();
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    void assertSameAsAlone(List<int[]> got) {
        for (int i = 0; i < 64; i++) {
            assertThat(got.get(i)).as("request %d (prompt %d tokens)", i, prompts.get(i).length).isEqualTo(alone.get(i));
        }
    }

    static void awaitIdle(LlmEngine e) throws InterruptedException {
        for (int i = 0; i < 200 && (e.stats().running() > 0 || e.stats().kvBlocksUsed() > 0); i++) Thread.sleep(10);
    }

    @Test
    void concurrentGreedyRequestsMatchEachAloneWithPrefixCaching() throws Exception {
        try (var e = engine(config(512, true))) {
            assertSameAsAlone(runAll(e));
            awaitIdle(e);
            assertThat(e.stats().prefixHits()).as("shared prefixes are served from the cache").isGreaterThan(0);
            assertThat(e.stats().kvBlocksUsed()).as("every block released").isZero();
        }
    }

    @Test
    void concurrentGreedyRequestsMatchEachAloneWithoutPrefixCaching() throws Exception {
        try (var e = engine(config(512, false))) {
            assertSameAsAlone(runAll(e));
            awaitIdle(e);
            assertThat(e.stats().prefixHits()).isZero();
            assertThat(e.stats().kvBlocksUsed()).isZero();
            // the engine thread's time is split between the runner's steps and its own work around them
            var s = e.stats();
            assertThat(s.steps()).isPositive();
            assertThat(s.runnerNanos()).as("time in runner steps").isPositive();
            assertThat(s.hostNanos()).as("time around them").isPositive();
            assertThat(s.hostShare()).isStrictlyBetween(0.0, 1.0);
        }
    }

    /**
     * Plain greedy rows take only the argmax from the step; rows that report logprobs or carry a
     * penalty of no effect take the full row through the sampler. Mixed in one batch, both give the
     * tokens each request gives alone.
     */
    @Test
    void greedyRowsByArgmaxAndByFullLogitsMixInOneBatch() throws Exception {
        try (var e = engine(config(512, true))) {
            var streams = new ArrayList<RequestStream>();
            for (int i = 0; i < 64; i++) {
                var p = switch (i % 3) {
                    case 0 -> params.get(i);
                    case 1 -> params.get(i).toBuilder().logprobs(1).build();
                    default -> params.get(i).toBuilder().presencePenalty(0.0).logitBias(java.util.Map.of(3, 0f)).build();
                };
                streams.add(e.submit(new EngineRequest("m" + i, prompts.get(i), p, null)));
            }
            var got = new ArrayList<int[]>();
            for (var s : streams) got.add(collect(s));
            assertSameAsAlone(got);
        }
    }

    /** Decode steps replayed from recorded graphs (padded batches of 1 to 16) give each request's tokens. */
    @Test
    void decodeStepsFromGraphsMatchEachAlone() throws Exception {
        try (var recording = new RecordingGraphBackend(new CpuBackend(2));
             var graphModel = ModelLoader.synthetic(model.config(), recording, DType.BF16, 11, LoadProgress.NONE);
             var e = new LlmEngine("tiny", graphModel, null, EOS, config(512, true))) {
            var got = new ArrayList<int[]>();
            var streams = new ArrayList<RequestStream>();
            for (int i = 0; i < 64; i++) streams.add(e.submit(new EngineRequest("g" + i, prompts.get(i), params.get(i), null)));
            for (var s : streams) got.add(collect(s));
            assertSameAsAlone(got);
            assertThat(recording.replays()).as("decode steps ran as graph replays").isGreaterThan(0);
        }
    }

    /** With graphs too: two samples per request sharing their prompt blocks, under a cache small enough to preempt. */
    @Test
    void samplesAndPreemptionWithDecodeGraphsKeepEveryRequestsTokens() throws Exception {
        try (var recording = new RecordingGraphBackend(new CpuBackend(2));
             var graphModel = ModelLoader.synthetic(model.config(), recording, DType.BF16, 11, LoadProgress.NONE);
             var e = new LlmEngine("tiny", graphModel, null, EOS, config(MAX_LEN / BLOCK + 2, true))) {
            runTwoSamplesEach(e, "gn");
            awaitIdle(e);
            assertThat(e.stats().preemptions()).isGreaterThan(0);
            assertThat(e.stats().kvBlocksUsed()).isZero();
            assertThat(recording.replays()).isGreaterThan(0);
        }
    }

    /**
     * Sampled requests (seeded; temperature, top-k, top-p, min-p) drawn by a backend that samples rows itself,
     * through decode graphs too, get the tokens the engine's own samplers give them.
     */
    @Test
    void rowsSampledByTheBackendGetTheSamplersTokens() throws Exception {
        var sampled = new ArrayList<SamplingParams>();
        var r = new Random(9);
        for (int i = 0; i < 24; i++) {
            sampled.add(SamplingParams.builder().temperature(0.6 + r.nextDouble()).topK(i % 3 == 0 ? 0 : 5 + r.nextInt(30))
                    .topP(i % 2 == 0 ? 1.0 : 0.5 + 0.5 * r.nextDouble()).minP(i % 4 == 1 ? 0.05 : 0).seed(1000L + i)
                    .maxTokens(1 + r.nextInt(20)).ignoreEos(true).build());
        }
        List<int[]> reference;
        try (var e = engine(config(512, true))) {
            reference = runSampled(e, sampled, "ref");
        }
        String before = System.getProperty(LlmEngine.DEVICE_SAMPLING_PROPERTY);
        System.setProperty(LlmEngine.DEVICE_SAMPLING_PROPERTY, "true");
        try (var recording = new RecordingGraphBackend(new CpuBackend(2), true);
             var graphModel = ModelLoader.synthetic(model.config(), recording, DType.BF16, 11, LoadProgress.NONE);
             var e = new LlmEngine("tiny", graphModel, null, EOS, config(512, true))) {
            List<int[]> got = runSampled(e, sampled, "dev");
            for (int i = 0; i < got.size(); i++) assertThat(got.get(i)).as("request %d", i).isEqualTo(reference.get(i));
            assertThat(recording.sampledRows()).as("rows the backend drew").isPositive();
            assertThat(recording.replays()).as("decode steps ran as graph replays").isPositive();
        } finally {
            if (before == null) System.clearProperty(LlmEngine.DEVICE_SAMPLING_PROPERTY);
            else System.setProperty(LlmEngine.DEVICE_SAMPLING_PROPERTY, before);
        }
    }

    private static List<int[]> runSampled(LlmEngine e, List<SamplingParams> sampled, String idPrefix) throws InterruptedException {
        var streams = new ArrayList<RequestStream>();
        for (int i = 0; i < sampled.size(); i++) {
            streams.add(e.submit(new EngineRequest(idPrefix + i, prompts.get(i), sampled.get(i), null)));
        }
        var out = new ArrayList<int[]>();
        for (var s : streams) out.add(collect(s));
        return out;
    }

    /** The first 16 requests with two samples each; both samples of each must equal the request alone. */
    static void runTwoSamplesEach(LlmEngine e, String idPrefix) throws InterruptedException {
        var streams = new ArrayList<RequestStream>();
        for (int i = 0; i < 16; i++) {
            var p = params.get(i).toBuilder().n(2).build();
            streams.add(e.submit(new EngineRequest(idPrefix + i, prompts.get(i), p, null)));
        }
        for (int i = 0; i < 16; i++) {
            var ids = new ArrayList<List<Integer>>(List.of(new ArrayList<>(), new ArrayList<>()));
            RequestOutput o;
            while ((o = streams.get(i).poll(60, TimeUnit.SECONDS)) != null) {
                for (int t : o.tokenIds()) ids.get(o.index()).add(t);
            }
            for (var sample : ids) {
                assertThat(sample.stream().mapToInt(Integer::intValue).toArray()).as("request %d", i).isEqualTo(alone.get(i));
            }
        }
    }

    @Test
    void preemptionUnderATinyCacheKeepsEveryRequestsTokens() throws Exception {
        try (var e = engine(config(MAX_LEN / BLOCK + 2, true))) {
            assertSameAsAlone(runAll(e));
            awaitIdle(e);
            assertThat(e.stats().preemptions()).as("the tiny pool forces preemption").isGreaterThan(0);
            assertThat(e.stats().kvBlocksUsed()).isZero();
        }
    }

    @Test
    void samplesSharingPromptBlocksSurvivePreemption() throws Exception {
        try (var e = engine(config(MAX_LEN / BLOCK + 2, true))) {
            runTwoSamplesEach(e, "n");
            awaitIdle(e);
            assertThat(e.stats().preemptions()).isGreaterThan(0);
            assertThat(e.stats().kvBlocksUsed()).isZero();
        }
    }

    @Test
    void greedySamplesOfOneRequestAllEqualTheSingleAnswer() {
        // a prompt of full blocks and a partial one: the samples share the full ones, each recomputes the tail
        int i = 0;
        while (prompts.get(i).length % BLOCK == 0 || prompts.get(i).length < BLOCK || alone.get(i).length < 3) i++;
        try (var e = engine(config(512, true))) {
            var p = params.get(i).toBuilder().n(3).build();
            var r = new LLM(e).generateIds(List.of(prompts.get(i)), p).getFirst();
            assertThat(r.outputs()).hasSize(3);
            for (var c : r.outputs()) assertThat(c.tokenIds()).isEqualTo(alone.get(i));
        }
    }

    @Test
    void seededSampleZeroOfManyEqualsTheSeededRequestAlone() {
        var p = SamplingParams.builder().temperature(0.9).seed(42L).maxTokens(12).ignoreEos(true).build();
        int[] prompt = prompts.get(9);
        int[] single;
        try (var runner = new ModelRunner(model, ModelRunner.CacheConfig.forSequences(MAX_LEN, 1, BLOCK, DType.F32))) {
            single = new Generator(runner, null, EOS).generate(prompt, p, s -> { }).outputIds();
        }
        try (var e = engine(config(512, false))) {
            var r = new LLM(e).generateIds(List.of(prompt), p.toBuilder().n(4).logprobs(2).build()).getFirst();
            assertThat(r.outputs().getFirst().tokenIds()).isEqualTo(single);
            for (var c : r.outputs()) {
                assertThat(c.tokenIds()).hasSize(12);
                assertThat(c.logprobs()).hasSize(12);
                assertThat(c.finishReason()).isEqualTo(FinishReason.LENGTH);
            }
            assertThat(r.outputs().stream().map(c -> java.util.Arrays.toString(c.tokenIds())).distinct().count())
                    .as("samples draw from different streams").isGreaterThan(1);
        }
    }

    /** A request that would decode for thousands of steps (seconds), so that an abort surely lands mid-decode. */
    static final int LONG = 4000;

    LlmEngine longContextEngine() {
        return engine(new EngineConfig(16, 48, BLOCK, LONG / BLOCK + 8, LONG, 1000, false, DType.F32));
    }

    static EngineRequest longRequest(String id) {
        return new EngineRequest(id, new int[]{5, 6, 7},
                SamplingParams.builder().temperature(0).maxTokens(LONG - 3).ignoreEos(true).build(), null);
    }

    @Test
    void abortMidDecodeEndsTheStreamAndFreesItsBlocks() throws Exception {
        try (var e = longContextEngine()) {
            var s = e.submit(longRequest("long"));
            RequestOutput first = s.poll(30, TimeUnit.SECONDS);
            assertThat(first).isNotNull();
            s.abort();
            RequestOutput o, last = first;
            while ((o = s.poll(30, TimeUnit.SECONDS)) != null) last = o;
            assertThat(last.finishReason()).isEqualTo(FinishReason.ABORT);
            assertThat(last.numOutputTokens()).isLessThan(LONG - 3);
            awaitIdle(e);
            assertThat(e.stats().kvBlocksUsed()).isZero();
        }
    }

    @Test
    void shutdownAbortsWhatIsInFlightAndRefusesNewRequests() throws Exception {
        var e = longContextEngine();
        var s = e.submit(longRequest("x"));
        assertThat(s.poll(30, TimeUnit.SECONDS)).isNotNull();
        e.shutdown(0);
        RequestOutput o, last = null;
        while ((o = s.poll(30, TimeUnit.SECONDS)) != null) last = o;
        assertThat(s.isDone()).isTrue();
        assertThat(last).isNotNull();
        assertThat(last.finishReason()).isEqualTo(FinishReason.ABORT);
        assertThatThrownBy(() -> e.submit(new EngineRequest("y", new int[]{5}, SamplingParams.greedy(), null)))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("shutting down");
    }

    @Test
    void stopTokenIdsEndASampleAndAreReported() {
        int i = 0;
        while (alone.get(i).length < 4) i++;
        int stopAt = alone.get(i)[2];
        var p = params.get(i).toBuilder().stopTokenIds(List.of(stopAt)).build();
        try (var e = engine(config(512, true))) {
            var c = new LLM(e).generateIds(List.of(prompts.get(i)), p).getFirst().outputs().getFirst();
            int firstStop = 0;
            while (alone.get(i)[firstStop] != stopAt) firstStop++;
            assertThat(c.tokenIds()).containsExactly(java.util.Arrays.copyOf(alone.get(i), firstStop + 1));
            assertThat(c.finishReason()).isEqualTo(FinishReason.STOP);
            assertThat(c.stopReason()).isEqualTo(stopAt);
        }
    }

    @Test
    void promptPlusMaxTokensBeyondTheContextIsRefused() {
        try (var e = engine(config(512, false))) {
            var p = SamplingParams.builder().maxTokens(100).build();
            assertThatThrownBy(() -> e.submit(new EngineRequest("big", new int[40], p, null)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("140").hasMessageContaining("context of 128");
        }
    }

    @Test
    void aFullWaitingQueueRefusesNewRequests() {
        // one sequence at a time, each decoding for seconds: the first runs, the second waits, the third is refused
        var c = new EngineConfig(1, 48, BLOCK, LONG / BLOCK + 8, LONG, 1, false, DType.F32);
        try (var e = engine(c)) {
            e.submit(longRequest("a"));
            assertThatThrownBy(() -> {
                for (int i = 0; i < 3; i++) e.submit(longRequest("b" + i));
            }).isInstanceOf(EngineOverloadedException.class).hasMessageContaining("limit 1");
        }
    }
}
