package dev.lathe.cli;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.SyntheticPresets;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.LlmEngine;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.cpu.CpuBackend;
import org.junit.jupiter.api.Test;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BenchProgressTest {

    /** A throughput run reports how far it got while it runs, so a run cut short by a time limit still says something. */
    @Test
    void throughputRunsPrintProgressWhileRequestsRun() throws Exception {
        try (var backend = new CpuBackend(1);
             var model = ModelLoader.synthetic(SyntheticPresets.get("tiny"), backend, DType.BF16, 3, LoadProgress.NONE);
             var engine = new LlmEngine("tiny", model, null, List.of(), new EngineConfig(2, 64, 16, 64, 128, 1000, true, DType.F32))) {
            var r = new Random(1);
            int[][] prompts = new int[24][];
            for (int i = 0; i < prompts.length; i++) prompts[i] = r.ints(16, 3, 500).toArray();
            var params = SamplingParams.builder().temperature(0).maxTokens(32).ignoreEos(true).build();
            var text = new StringWriter();
            var result = BenchCommand.run(engine, prompts, params, 1, new PrintWriter(text, true));
            assertThat(result.outputTokens()).isEqualTo(24 * 32);
            String out = text.toString();
            assertThat(out).as("progress lines every millisecond of a run of %s s", result.seconds()).contains("of 24 requests done");
            assertThat(out).containsPattern("\\d+ output tokens \\([\\d.]+ tok/s so far\\), \\d+ running, \\d+ waiting, \\d+ preemptions");
        }
    }

    /**
     * --deadline-seconds: a run that cannot end in time gives up with the numbers that said so, and every request is
     * aborted (the engine is left with nothing running); one with room runs to the end.
     */
    @Test
    void aRunThatCannotMeetItsDeadlineGivesUpAndAbortsItsRequests() throws Exception {
        try (var backend = new CpuBackend(1);
             var model = ModelLoader.synthetic(SyntheticPresets.get("tiny"), backend, DType.BF16, 3, LoadProgress.NONE);
             var engine = new LlmEngine("tiny", model, null, List.of(), new EngineConfig(2, 64, 16, 64, 128, 1000, true, DType.F32))) {
            var r = new Random(2);
            int[][] prompts = new int[24][];
            for (int i = 0; i < prompts.length; i++) prompts[i] = r.ints(16, 3, 500).toArray();
            var params = SamplingParams.builder().temperature(0).maxTokens(48).ignoreEos(true).build();
            // a deadline of a millisecond, checked after 20 ms every 10 ms: the run cannot end in time
            assertThatThrownBy(() -> BenchCommand.run(engine, prompts, params, 0, null, new BenchCommand.Deadline(0.001, 0.02, 0.01)))
                    .isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("past --deadline-seconds 0.001").hasMessageContaining("of 1152 output tokens");
            long waitUntil = System.nanoTime() + 5_000_000_000L;
            while (engine.stats().running() + engine.stats().waiting() > 0 && System.nanoTime() < waitUntil) Thread.sleep(5);
            assertThat(engine.stats().running() + engine.stats().waiting()).as("requests left after giving up").isZero();
            // a deadline an hour away, checked from half of it on (as --deadline-seconds does), lets the same run finish
            var done = BenchCommand.run(engine, prompts, params, 0, null, new BenchCommand.Deadline(3600, 1800, 0.01));
            assertThat(done.outputTokens()).isEqualTo(24 * 48);
        }
    }
}
