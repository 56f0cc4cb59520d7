package dev.lathe.core.generate;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.checkpoint.Checkpoint;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.GenerationConfig;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.ModelConfigs;
import dev.lathe.core.config.SyntheticPresets;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.LoadProgress;
import dev.lathe.core.model.ModelLoader;
import dev.lathe.core.tokenizer.Tokenizer;

import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;

/**
 * A model ready to run: its weights resident in a backend, its tokenizer (checkpoints only; synthetic
 * models have none) and the model's own generation defaults.
 */
public final class LoadedModel implements AutoCloseable {
    private final String name;
    private final LlamaModel model;
    private final Tokenizer tokenizer;
    private final GenerationConfig generationConfig;
    private final Checkpoint checkpoint;

    private LoadedModel(String name, LlamaModel model, Tokenizer tokenizer, GenerationConfig generationConfig,
                        Checkpoint checkpoint) {
        this.name = name;
        this.model = model;
        this.tokenizer = tokenizer;
        this.generationConfig = generationConfig;
        this.checkpoint = checkpoint;
    }

    /** The config only, without loading weights (for {@code inspect}). */
    public static ModelConfig config(ModelRef ref) {
        return switch (ref) {
            case ModelRef.Synthetic s -> SyntheticPresets.get(s.preset());
            case ModelRef.Directory d -> ModelConfigs.load(d.path());
        };
    }

    public static LoadedModel open(ModelRef ref, Backend backend, DType syntheticDtype, long seed, LoadProgress progress) {
        return switch (ref) {
            case ModelRef.Synthetic s -> {
                ModelConfig config = SyntheticPresets.get(s.preset());
                LlamaModel model = ModelLoader.synthetic(config, backend, syntheticDtype, seed, progress);
                yield new LoadedModel(ref.displayName(), model, null, GenerationConfig.EMPTY, null);
            }
            case ModelRef.Directory d -> {
                Checkpoint ckpt = Checkpoint.open(d.path());
                try {
                    LlamaModel model = ModelLoader.load(ckpt.config(), ckpt, backend, progress);
                    Tokenizer tok = Files.exists(d.path().resolve("tokenizer.json")) ? Tokenizer.load(d.path()) : null;
                    yield new LoadedModel(d.path().getFileName().toString(), model, tok, ckpt.generationConfig(), ckpt);
                } catch (RuntimeException e) {
                    ckpt.close();
                    throw e;
                }
            }
        };
    }

    public String name() { return name; }

    public LlamaModel model() { return model; }

    public ModelConfig config() { return model.config(); }

    public Optional<Tokenizer> tokenizer() { return Optional.ofNullable(tokenizer); }

    public GenerationConfig generationConfig() { return generationConfig; }

    /** End-of-sequence ids from generation_config.json, config.json and the tokenizer, in that order. */
    public List<Integer> eosTokenIds() {
        var ids = new LinkedHashSet<Integer>();
        if (generationConfig.eosTokenIds() != null) ids.addAll(generationConfig.eosTokenIds());
        if (config().eosTokenIds() != null) ids.addAll(config().eosTokenIds());
        if (tokenizer != null) ids.addAll(tokenizer.eosTokenIds());
        return new ArrayList<>(ids);
    }

    @Override
    public void close() {
        model.close();
        if (tokenizer != null) tokenizer.close();
        if (checkpoint != null) checkpoint.close();
    }
}
