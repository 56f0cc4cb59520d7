package dev.lathe.server;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.Engine;
import dev.lathe.core.generate.Generator;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRef;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.sampling.SamplingParams;
import dev.lathe.cpu.CpuBackend;

import java.nio.file.Files;
import java.nio.file.Path;

/** A real checkpoint (a tiny Llama 3 with a tokenizer and a ChatML template) on the CPU backend, loaded once. */
final class TestModels {
    static final int MAX_MODEL_LEN = 256;
    private static LoadedModel model;

    private TestModels() {}

    static synchronized LoadedModel model() {
        if (model == null) {
            Path dir = locate("fixtures/golden/llama3-bf16");
            model = LoadedModel.open(new ModelRef.Directory(dir), new CpuBackend(2), DType.BF16, 0, LoadProgress.NONE);
        }
        return model;
    }

    /** A fresh batching engine (what {@code lathe serve} runs) over the shared weights with its own KV cache. */
    static Engine engine(String name, int maxWaiting) {
        return EngineFactory.DEFAULT.create(name, model(), new EngineFactory.Settings(MAX_MODEL_LEN, 16, maxWaiting, DType.F32));
    }

    /** What the one-sequence generator gives for these ids: the reference the server must match. */
    static synchronized String reference(int[] promptIds, SamplingParams params) {
        LoadedModel m = model();
        try (var runner = new ModelRunner(m.model(), ModelRunner.CacheConfig.forSequences(MAX_MODEL_LEN, 1, 16, DType.F32))) {
            return new Generator(runner, m.tokenizer().orElseThrow(), m.eosTokenIds()).generate(promptIds, params, s -> { }).text();
        }
    }

    private static Path locate(String rel) {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve(rel))) return p.resolve(rel);
        }
        throw new IllegalStateException(rel + " not found above " + Path.of("").toAbsolutePath());
    }
}
