package dev.lathe.cpu.golden;

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
 * One reference checkpoint under {@code fixtures/golden/<variant>/} (made by tools/reference/make_fixtures.py
 * with Hugging Face transformers): its cases, each with the prompt's ids, transformers' float32 logits for
 * every prompt position and its 32-token greedy continuation.
 */
record GoldenFixture(String variant, Path dir, List<Case> cases) {

    record Case(int index, String prompt, int[] inputIds, int[] greedyIds, String greedyText, float[] logits, int vocab) {
        float logit(int position, int token) { return logits[position * vocab + token]; }
    }

    static Path root() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            Path candidate = p.resolve("fixtures").resolve("golden");
            if (Files.isDirectory(candidate)) return candidate;
        }
        throw new IllegalStateException("fixtures/golden not found above " + Path.of("").toAbsolutePath());
    }

    static List<GoldenFixture> all() throws IOException {
        List<GoldenFixture> out = new ArrayList<>();
        try (Stream<Path> dirs = Files.list(root())) {
            for (Path d : dirs.sorted().toList()) {
                if (Files.exists(d.resolve("reference.json"))) out.add(load(d));
            }
        }
        return out;
    }

    static GoldenFixture load(Path dir) throws IOException {
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
        return new GoldenFixture(dir.getFileName().toString(), dir, cases);
    }

    private static int[] ints(JsonNode arr) {
        int[] out = new int[arr.size()];
        for (int i = 0; i < out.length; i++) out[i] = arr.get(i).asInt();
        return out;
    }

    @Override
    public String toString() { return variant; }
}
