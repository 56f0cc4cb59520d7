package dev.lathe.cli;

import dev.lathe.core.config.GenerationConfig;
import dev.lathe.core.sampling.SamplingParams;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;

/**
 * Sampling flags. A flag the user leaves out takes the model's generation_config.json default, then
 * Lathe's own (temperature 0.7, top-p 0.95, 128 new tokens).
 */
final class SamplingOptions {
    @Option(names = "--max-tokens", description = "most tokens to generate (default 128)")
    Integer maxTokens;
    @Option(names = "--min-tokens", description = "fewest tokens before EOS may end the output")
    Integer minTokens;
    @Option(names = {"-t", "--temperature"}, description = "0 = greedy")
    Double temperature;
    @Option(names = "--top-p")
    Double topP;
    @Option(names = "--top-k", description = "0 = off")
    Integer topK;
    @Option(names = "--min-p")
    Double minP;
    @Option(names = "--repetition-penalty")
    Double repetitionPenalty;
    @Option(names = "--presence-penalty")
    Double presencePenalty;
    @Option(names = "--frequency-penalty")
    Double frequencyPenalty;
    @Option(names = "--seed", description = "same seed, same output")
    Long seed;
    @Option(names = "--stop", description = "stop string (repeatable)")
    List<String> stop = new ArrayList<>();
    @Option(names = "--stop-token-id", description = "stop token id (repeatable)")
    List<Integer> stopTokenIds = new ArrayList<>();
    @Option(names = "--ignore-eos", description = "keep generating past EOS")
    boolean ignoreEos;

    SamplingParams toParams(GenerationConfig g) {
        boolean modelSamples = g.doSample() == null || g.doSample();
        double temp = temperature != null ? temperature
                : (modelSamples && g.temperature() != null ? g.temperature() : (g.doSample() != null && !g.doSample() ? 0.0 : 0.7));
        var b = SamplingParams.builder()
                .temperature(temp)
                .topP(topP != null ? topP : (modelSamples && g.topP() != null ? g.topP() : 0.95))
                .topK(topK != null ? topK : (modelSamples && g.topK() != null ? g.topK() : 0))
                .minP(minP != null ? minP : (g.minP() != null ? g.minP() : 0.0))
                .repetitionPenalty(repetitionPenalty != null ? repetitionPenalty
                        : (g.repetitionPenalty() != null ? g.repetitionPenalty() : 1.0))
                .presencePenalty(presencePenalty != null ? presencePenalty : 0.0)
                .frequencyPenalty(frequencyPenalty != null ? frequencyPenalty : 0.0)
                .maxTokens(maxTokens != null ? maxTokens : 128)
                .minTokens(minTokens != null ? minTokens : 0)
                .stop(stop)
                .stopTokenIds(stopTokenIds)
                .ignoreEos(ignoreEos);
        if (seed != null) b.seed(seed);
        return b.build();
    }
}
