package dev.lathe.cli;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.generate.Generator;
import dev.lathe.core.generate.LoadedModel;
import dev.lathe.core.generate.ModelRunner;
import dev.lathe.core.tokenizer.ChatMessage;
import dev.lathe.core.tokenizer.ChatTemplate;
import dev.lathe.core.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code lathe chat}: a multi-turn conversation on standard input. Each turn renders the whole
 * conversation through the model's chat template; {@code /reset} starts over, {@code /exit} or EOF ends.
 */
@Command(name = "chat", description = "Chat with a model through its chat template (one message per line).")
final class ChatCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Mixin SamplingOptions sampling;

    @Option(names = "--system", description = "system message")
    String system;

    @Spec CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        try (Backend backend = modelOptions.openBackend();
             LoadedModel m = modelOptions.load(backend);
             ModelRunner runner = modelOptions.runner(m, 1)) {
            Tokenizer tok = m.tokenizer().orElseThrow(() -> new IllegalArgumentException(
                    "model " + m.name() + " has no tokenizer; chat needs a checkpoint with tokenizer.json"));
            ChatTemplate template = tok.chatTemplate().orElseThrow(() -> new IllegalArgumentException(
                    "model " + m.name() + " has no chat template (tokenizer_config.json chat_template or chat_template.jinja)"));
            var params = sampling.toParams(m.generationConfig());
            var gen = new Generator(runner, tok, m.eosTokenIds());
            List<ChatMessage> messages = new ArrayList<>();
            if (system != null) messages.add(new ChatMessage("system", system));
            var in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            boolean interactive = System.console() != null;
            while (true) {
                if (interactive) {
                    out.print("> ");
                    out.flush();
                }
                String line = in.readLine();
                if (line == null || line.strip().equals("/exit")) break;
                if (line.isBlank()) continue;
                if (line.strip().equals("/reset")) {
                    messages.removeIf(msg -> !msg.role().equals("system"));
                    continue;
                }
                messages.add(new ChatMessage("user", line));
                int[] ids = tok.encode(template.render(messages, true), false);
                var result = gen.generate(ids, params, piece -> {
                    out.print(piece);
                    out.flush();
                });
                out.println();
                out.flush();
                messages.add(new ChatMessage("assistant", result.text()));
            }
        }
        return 0;
    }
}
