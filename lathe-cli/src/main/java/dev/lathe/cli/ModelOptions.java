package dev.lathe.cli;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.model.LoadProgress;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Option;

/** Options shared by every command that runs a model. */
final class ModelOptions {
    @Option(names = {"-m", "--model"}, paramLabel = "MODEL",
            description = "HF checkpoint directory or synthetic:<preset> (default: the model in models/)")
    String model;

    @Option(names = "--backend", defaultValue = "auto", description = "cpu, cuda or auto (default: ${DEFAULT-VALUE})")
    String backend;

    @Option(names = "--threads", defaultValue = "0", description = "CPU backend threads (0 = all cores)")
    int threads;

    @Option(names = "--max-model-len", defaultValue = "0",
            description = "longest sequence (prompt + output) in tokens; 0 = the model's context, at most 8192 on the CPU backend")
    int maxModelLen;

    @Option(names = "--block-size", defaultValue = "16", description = "KV-cache block size in tokens")
    int blockSize;

    @Option(names = "--synthetic-dtype", defaultValue = "BF16", description = "weight dtype of synthetic models: BF16, F16, F32")
    DType syntheticDtype;

    @Option(names = "--weights-seed", defaultValue = "0", description = "seed of synthetic weights")
    long weightsSeed;

    ModelRef ref() { return ModelRef.parse(model); }

    Backend openBackend() {
        return Backends.create(backend, threads <= 0 ? Runtime.getRuntime().availableProcessors() : threads);
    }

    LoadedModel load(Backend b) {
        ModelRef ref = ref();
        var config = LoadedModel.config(ref);
        long bytes = ref instanceof ModelRef.Synthetic ? config.parameterCount() * syntheticDtype.byteSize() : 0;
        boolean showBar = System.console() != null && (bytes == 0 || bytes > 200_000_000L);
        if (!showBar) return LoadedModel.open(ref, b, syntheticDtype, weightsSeed, LoadProgress.NONE);
        try (ProgressBar bar = new ProgressBarBuilder().setTaskName("loading " + ref.displayName())
                .setStyle(ProgressBarStyle.ASCII).setUnit(" MB", 1_000_000).setInitialMax(1).setConsumer(
                        new me.tongfei.progressbar.ConsoleProgressBarConsumer(System.err)).build()) {
            return LoadedModel.open(ref, b, syntheticDtype, weightsSeed, (name, done, total) -> {
                bar.maxHint(total);
                bar.stepTo(done);
            });
        }
    }

    ModelRunner runner(LoadedModel m, int maxSeqs) {
        int context = m.config().maxPositionEmbeddings();
        int len = maxModelLen > 0 ? maxModelLen : Math.min(context, 8192);
        if (len > context) {
            throw new IllegalArgumentException("--max-model-len " + len + " exceeds the model's context of " + context + " tokens");
        }
        return new ModelRunner(m.model(), ModelRunner.CacheConfig.forSequences(len, maxSeqs, blockSize, cacheDtype(m)));
    }

    /** F32 on the CPU reference (exact against float32 references), BF16 on GPUs. */
    static DType cacheDtype(LoadedModel m) {
        return m.model().backend().name().equals("cpu") ? DType.F32 : DType.BF16;
    }
}
