package dev.lathe.core.generate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lathe.core.checkpoint.Safetensors;
import dev.lathe.core.checkpoint.WeightTensor;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Reference outputs of a checkpoint made by Hugging Face transformers (tools/reference/make_fixtures.py for
 * {@code fixtures/golden/<variant>/}, tools/train-tiny for the shipped model): {@code reference.json} with
 * cases (prompt, input ids, greedy continuation) and {@code reference.safetensors} with float32 logits of
 * every prompt position ({@code logits.<case>}, {@code [promptLen, vocab]}).
 */
public record GoldenReference(String variant, Path dir, List<Case> cases) {

    public record Case(int index, String prompt, int[] inputIds, int[] greedyIds, String greedyText, float[] logits, int vocab) {
        public float logit(int position, int token) { return logits[position * vocab + token]; }
    }

    /** {@code fixtures/golden} in the nearest directory above the working directory that has one. */
    public static Path root() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            Path candidate = p.resolve("fixtures").resolve("golden");
            if (Files.isDirectory(candidate)) return candidate;
        }
        throw new IllegalStateException("fixtures/golden not found above " + Path.of("").toAbsolutePath());
    }

    public static List<GoldenReference> all() throws IOException {
        List<GoldenReference> out = new ArrayList<>();
        try (Stream<Path> dirs = Files.list(root())) {
            for (Path d : dirs.sorted().toList()) {
                if (Files.exists(d.resolve("reference.json"))) out.add(load(d));
            }
        }
        return out;
    }

    public static GoldenReference load(Path dir) throws IOException {
        JsonNode ref = new ObjectMapper().readTree(dir.resolve("reference.json").toFile());
        List<Case> cases = new ArrayList<>();
        try (Safetensors st = Safetensors.open(dir.resolve("reference.safetensors"))) {
            int i = 0;
            for (JsonNode c : ref.get("cases")) {
                WeightTensor t = st.get("logits." + i);
                float[] logits = t.data().toArray(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN));
                cases.add(new Case(i, c.get("prompt").asText(), ints(c.get("input_ids")), ints(c.get("greedy_ids")),
                        c.get("greedy_text").asText(), logits, (int) t.shape()[1]));
                i++;
            }
        }
        return new GoldenReference(dir.getFileName().toString(), dir, cases);
    }

    private static int[] ints(JsonNode arr) {
        int[] out = new int[arr.size()];
        for (int i = 0; i < out.length; i++) out[i] = arr.get(i).asInt();
        return out;
    }

    @Override
    public String toString() { return variant; }
}
