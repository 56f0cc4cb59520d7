package dev.lathe.core.engine;

import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.sampling.Sampler;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.core.generate.OutputProcessor;
import dev.lathe.core.tokenizer.IncrementalDetokenizer;
import dev.lathe.core.tokenizer.Tokenizer;

import java.util.List;
import java.util.function.Consumer;

/**
 * A request inside the engine: its stream and one {@link SampleState} per sample. Built and validated
 * on the submitting thread, then owned by the engine thread (handed over through the engine's queue).
 */
final class RequestState {
    /** One sample: its scheduler sequence id, sampler and output processing (text, stops, length). */
    static final class SampleState {
        final RequestState request;
        final int index;
        final long seqId;
        final Sampler sampler;
        final OutputProcessor output;
        boolean started;  // in the scheduler: the first sample from the start, the others once forked
        boolean finished;
        // engine thread, while in the runner's batch: its sequence there and its row in the current step
        dev.lathe.core.generate.Sequence seq;
        int row;
        // with LlmEngine.OVERLAP_PROPERTY: the in-flight step's row whose pick is this sample's token at pendingPos
        // (a placeholder until then), or -1
        int pendingRow = -1;
        int pendingPos;

        SampleState(RequestState request, int index, long seqId, Sampler sampler, OutputProcessor output) {
            this.request = request;
            this.index = index;
            this.seqId = seqId;
            this.sampler = sampler;
            this.output = output;
        }
    }

    final EngineRequest request;
    final QueueRequestStream stream;
    final int maxTokens;
    final SampleState[] samples;
    int numCached = -1; // prompt tokens found in the prefix cache; -1 until first scheduled
    int numFinished;

    private RequestState(EngineRequest request, QueueRequestStream stream, int maxTokens, int n) {
        this.request = request;
        this.stream = stream;
        this.maxTokens = maxTokens;
        this.samples = new SampleState[n];
    }

    /**
     * Checks a request against the model and the engine's limits and builds its state; sample {@code i}
     * gets sequence id {@code firstSeqId + i}.
     *
     * @throws IllegalArgumentException saying what is wrong with the request
     */
    static RequestState create(EngineRequest r, ModelConfig model, EngineConfig config, Tokenizer tokenizer,
                               List<Integer> eosTokenIds, long firstSeqId, Consumer<String> onAbort) {
        int[] prompt = r.promptIds().clone(); // the caller may reuse its array
        SamplingParams p = r.params();
        int vocab = model.vocabSize();
        for (int i = 0; i < prompt.length; i++) {
            if (prompt[i] < 0 || prompt[i] >= vocab) {
                throw new IllegalArgumentException("request " + r.id() + ": prompt token " + i + " is " + prompt[i]
                        + ", outside the vocabulary [0, " + vocab + ")");
            }
        }
        int limit = config.maxModelLen();
        if (prompt.length >= limit) {
            throw new IllegalArgumentException("request " + r.id() + ": the prompt has " + prompt.length
                    + " tokens; the context holds " + limit + " including at least one output token; shorten the prompt");
        }
        int maxTokens = p.maxTokens() == null ? limit - prompt.length : p.maxTokens();
        if (prompt.length + maxTokens > limit) {
            throw new IllegalArgumentException("request " + r.id() + ": prompt (" + prompt.length + " tokens) + maxTokens ("
                    + maxTokens + ") = " + (prompt.length + maxTokens) + " exceeds the context of " + limit
                    + " tokens; lower maxTokens or shorten the prompt");
        }
        if (p.n() > config.maxNumSeqs()) {
            throw new IllegalArgumentException("request " + r.id() + ": n = " + p.n() + " exceeds maxNumSeqs = "
                    + config.maxNumSeqs() + "; lower n or raise maxNumSeqs");
        }
        if (p.logprobs() != null && p.logprobs() > vocab) {
            throw new IllegalArgumentException("request " + r.id() + ": logprobs = " + p.logprobs()
                    + " exceeds the vocabulary of " + vocab);
        }
        var own = new EngineRequest(r.id(), prompt, p, r.cacheSalt());
        var state = new RequestState(own, new QueueRequestStream(r.id(), onAbort), maxTokens, p.n());
        for (int i = 0; i < p.n(); i++) {
            // sample i of a seeded request draws from seed + i: samples differ, yet each replays exactly
            SamplingParams sp = i == 0 || p.seed() == null ? p : p.toBuilder().seed(p.seed() + i).build();
            var sampler = new Sampler(sp, vocab, prompt, eosTokenIds);
            var detok = tokenizer == null ? null : new IncrementalDetokenizer(tokenizer, prompt, p.skipSpecialTokens());
            state.samples[i] = new SampleState(state, i, firstSeqId + i, sampler,
                    new OutputProcessor(p, eosTokenIds, OutputProcessor.TokenText.of(detok), maxTokens));
        }
        return state;
    }
}
