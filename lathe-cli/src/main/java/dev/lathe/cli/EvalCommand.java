package dev.lathe.cli;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.generate.Perplexity;
import dev.lathe.core.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code lathe eval}: perplexity of a text file in non-overlapping windows (see {@link Perplexity}). */
@Command(name = "eval", description = "Perplexity of a text file.")
final class EvalCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Option(names = {"-f", "--file"}, required = true, description = "UTF-8 text file")
    Path file;

    @Option(names = "--window", defaultValue = "512", description = "tokens per window (default ${DEFAULT-VALUE})")
    int window;

    @Option(names = "--max-windows", defaultValue = "0", description = "score only the first N windows (0 = all)")
    int maxWindows;

    @Option(names = "--no-bos", description = "do not start each window with the BOS token")
    boolean noBos;

    @Spec CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("--file " + file + ": no such file");
        String text = Files.readString(file, StandardCharsets.UTF_8);
        try (Backend backend = modelOptions.openBackend();
             LoadedModel m = modelOptions.load(backend);
             ModelRunner runner = modelOptions.runner(m, 1)) {
            Tokenizer tok = m.tokenizer().orElseThrow(() -> new IllegalArgumentException(
                    "model " + m.name() + " has no tokenizer; eval needs a checkpoint with tokenizer.json"));
            int[] ids = tok.encode(text, false);
            Integer bos = noBos ? null : tok.bosTokenId();
            var r = Perplexity.evaluate(runner, ids, window, maxWindows, bos);
            spec.commandLine().getOut().printf(Locale.ROOT,
                    "perplexity %.4f (mean NLL %.6f nats over %d tokens, %d windows of %d%s)%n",
                    r.perplexity(), r.meanNll(), r.scoredTokens(), r.windows(), window, bos != null ? " after BOS" : "");
        }
        return 0;
    }
}
