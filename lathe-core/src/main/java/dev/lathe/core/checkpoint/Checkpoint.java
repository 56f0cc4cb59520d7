package dev.lathe.core.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lathe.core.config.GenerationConfig;
import dev.lathe.core.config.GenerationConfigs;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.ModelConfigs;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.TreeSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * A Hugging Face checkpoint directory: {@code config.json}, optional {@code generation_config.json} and the
 * weights in safetensors form, found in this order:
 * <ol>
 *   <li>{@code model.safetensors.index.json}: the shards its {@code weight_map} names;</li>
 *   <li>{@code model.safetensors};</li>
 *   <li>otherwise every {@code *.safetensors} file in the directory.</li>
 * </ol>
 * Every shard is memory-mapped until {@link #close()}.
 */
public final class Checkpoint implements WeightSource {
    static final String INDEX = "model.safetensors.index.json";
    static final String SINGLE = "model.safetensors";

    private final Path dir;
    private final ModelConfig config;
    private final GenerationConfig generationConfig;
    private final List<Safetensors> shards;
    private final Map<String, Safetensors> byName;

    private Checkpoint(Path dir, ModelConfig config, GenerationConfig generationConfig, List<Safetensors> shards,
                       Map<String, Safetensors> byName) {
        this.dir = dir;
        this.config = config;
        this.generationConfig = generationConfig;
        this.shards = shards;
        this.byName = byName;
    }

    public static Checkpoint open(Path dir) {
        if (!Files.exists(dir)) {
            throw new CheckpointException(dir + ": no such directory; pass a Hugging Face checkpoint directory"
                    + " (with config.json and *.safetensors)");
        }
        if (!Files.isDirectory(dir)) {
            throw new CheckpointException(dir + ": not a directory; pass the checkpoint directory that holds this"
                    + " file and its config.json");
        }
        if (!Files.isRegularFile(dir.resolve("config.json"))) {
            throw new CheckpointException(dir + ": no config.json; a Hugging Face checkpoint directory needs the"
                    + " model's config.json next to its weights");
        }
        ModelConfig config = ModelConfigs.load(dir);
        GenerationConfig generation = GenerationConfigs.load(dir);
        List<Path> files = weightFiles(dir);
        List<Safetensors> shards = new ArrayList<>();
        try {
            Map<String, Safetensors> byName = new LinkedHashMap<>();
            for (Path f : files) {
                Safetensors st = Safetensors.open(f);
                shards.add(st);
                for (String name : st.names()) {
                    Safetensors prev = byName.putIfAbsent(name, st);
                    if (prev != null) {
                        throw new CheckpointException(dir + ": tensor '" + name + "' is in both "
                                + prev.file().getFileName() + " and " + f.getFileName()
                                + "; remove the stray file so that each tensor has one source");
                    }
                }
            }
            Path index = dir.resolve(INDEX);
            if (Files.isRegularFile(index)) checkIndex(index, readWeightMap(index), byName);
            return new Checkpoint(dir, config, generation, List.copyOf(shards), Collections.unmodifiableMap(byName));
        } catch (RuntimeException e) {
            shards.forEach(Safetensors::close);
            throw e;
        }
    }

    /** The weight files in the order they are searched (index shards sorted by file name). */
    private static List<Path> weightFiles(Path dir) {
        Path index = dir.resolve(INDEX);
        if (Files.isRegularFile(index)) {
            List<Path> files = new ArrayList<>();
            for (String shard : new TreeSet<>(readWeightMap(index).values())) {
                Path f = dir.resolve(shard);
                if (!Files.isRegularFile(f)) {
                    throw new CheckpointException(index + ": names shard '" + shard + "', which is not in " + dir
                            + "; download the missing shard");
                }
                files.add(f);
            }
            return files;
        }
        Path single = dir.resolve(SINGLE);
        if (Files.isRegularFile(single)) return List.of(single);
        try (Stream<Path> s = Files.list(dir)) {
            List<Path> any = s.filter(p -> p.getFileName().toString().endsWith(".safetensors") && Files.isRegularFile(p))
                    .sorted().toList();
            if (!any.isEmpty()) return any;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
        boolean pytorch = Files.exists(dir.resolve("pytorch_model.bin")) || Files.exists(dir.resolve("pytorch_model.bin.index.json"));
        throw new CheckpointException(dir + ": no " + INDEX + ", no " + SINGLE + " and no other *.safetensors file"
                + (pytorch ? "; only PyTorch .bin weights are present, convert them to safetensors first"
                           : "; download the model's safetensors weights into this directory"));
    }

    private static Map<String, String> readWeightMap(Path index) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(index.toFile());
        } catch (IOException e) {
            throw new CheckpointException(index + ": not valid JSON (" + e.getMessage() + "); re-download the index file", e);
        }
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject() || map.isEmpty()) {
            throw new CheckpointException(index + ": has no 'weight_map' object naming the shard of each tensor;"
                    + " re-download the index file");
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : map.properties()) {
            if (!e.getValue().isTextual()) {
                throw new CheckpointException(index + ": weight_map entry '" + e.getKey() + "' is " + e.getValue()
                        + ", not a file name");
            }
            out.put(e.getKey(), e.getValue().asText());
        }
        return out;
    }

    private static void checkIndex(Path index, Map<String, String> weightMap, Map<String, Safetensors> byName) {
        for (Map.Entry<String, String> e : weightMap.entrySet()) {
            Safetensors st = byName.get(e.getKey());
            if (st == null || !st.file().getFileName().toString().equals(Path.of(e.getValue()).getFileName().toString())) {
                throw new CheckpointException(index + ": says tensor '" + e.getKey() + "' is in " + e.getValue()
                        + ", but " + (st == null ? "no shard holds it" : "it is in " + st.file().getFileName())
                        + "; the index and the shards do not belong together, re-download them");
            }
        }
    }

    public Path dir() { return dir; }

    public ModelConfig config() { return config; }

    /** {@code generation_config.json}, or {@link GenerationConfig#EMPTY} when the directory has none. */
    public GenerationConfig generationConfig() { return generationConfig; }

    /** The mapped weight files, in search order. */
    public List<Safetensors> files() { return shards; }

    @Override
    public boolean has(String name) { return byName.containsKey(name); }

    @Override
    public WeightTensor get(String name) {
        Safetensors st = byName.get(name);
        if (st == null) {
            String searched = shards.stream().map(s -> s.file().getFileName().toString()).collect(Collectors.joining(", "));
            throw new CheckpointException("tensor '" + name + "' is not in checkpoint " + dir + " (searched " + searched
                    + "); the checkpoint does not match the model's architecture or is incomplete");
        }
        return st.get(name);
    }

    @Override
    public Set<String> names() { return byName.keySet(); }

    @Override
    public void close() {
        shards.forEach(Safetensors::close);
    }
}
