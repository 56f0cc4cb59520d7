package dev.lathe.cli;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.generate.Generator;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.tokenizer.ChatMessage;
import dev.lathe.core.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code lathe generate}: one completion of a prompt, printed (or streamed) to standard output. */
@Command(name = "generate", description = "Complete a prompt.")
final class GenerateCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Mixin SamplingOptions sampling;

    @Option(names = {"-p", "--prompt"}, required = true, description = "the prompt text")
    String prompt;

    @Option(names = "--stream", description = "print tokens as they come")
    boolean stream;

    @Option(names = "--chat", description = "wrap the prompt as a user message in the model's chat template")
    boolean chat;

    @Option(names = "--stats", description = "print token counts and speed to standard error")
    boolean stats;

    @Spec CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        try (Backend backend = modelOptions.openBackend();
             LoadedModel m = modelOptions.load(backend);
             ModelRunner runner = modelOptions.runner(m, 1)) {
            int[] ids = encode(m, prompt, chat);
            var params = sampling.toParams(m.generationConfig());
            var gen = new Generator(runner, m.tokenizer().orElse(null), m.eosTokenIds());
            var result = gen.generate(ids, params, piece -> {
                if (stream) {
                    out.print(piece);
                    out.flush();
                }
            });
            if (!stream) out.print(result.text());
            out.println();
            out.flush();
            if (stats) {
                System.err.printf(Locale.ROOT, "prompt %d tokens, output %d tokens (%s), prefill %.1f ms, decode %.1f tok/s%n",
                        ids.length, result.outputIds().length, result.finishReason().name().toLowerCase(Locale.ROOT),
                        result.prefillNanos() / 1e6, result.decodeTokensPerSecond());
            }
        }
        return 0;
    }

    /** Token ids of a prompt: through the tokenizer (and chat template), or UTF-8 bytes for synthetic models. */
    static int[] encode(LoadedModel m, String text, boolean chat) {
        if (m.tokenizer().isEmpty()) {
            byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
            int[] ids = new int[Math.max(1, bytes.length)];
            for (int i = 0; i < bytes.length; i++) ids[i] = (bytes[i] & 0xFF) % m.config().vocabSize();
            return ids;
        }
        Tokenizer tok = m.tokenizer().get();
        if (chat) {
            var template = tok.chatTemplate().orElseThrow(() -> new IllegalArgumentException(
                    "model " + m.name() + " has no chat template (tokenizer_config.json chat_template); drop --chat"));
            String rendered = template.render(List.of(new ChatMessage("user", text)), true);
            return tok.encode(rendered, false);
        }
        return tok.encode(text, true);
    }
}
