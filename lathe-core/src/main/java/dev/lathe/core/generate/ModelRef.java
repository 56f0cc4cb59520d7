package dev.lathe.core.generate;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What the user named as a model: a Hugging Face checkpoint directory, or {@code synthetic:<preset>}
 * (seeded random weights of a real model's shape), or nothing — then the model shipped in
 * {@code models/} of the installation.
 */
public sealed interface ModelRef {
    String DEFAULT_MODEL = "kjv-tiny";

    record Directory(Path path) implements ModelRef {
        @Override public String displayName() { return path.toString(); }
    }

    record Synthetic(String preset) implements ModelRef {
        @Override public String displayName() { return "synthetic:" + preset; }
    }

    String displayName();

    /**
     * Parses a model argument. {@code null} or blank means the shipped default: {@code <home>/models/kjv-tiny}
     * where home is the {@code lathe.home} system property (set by the launcher), else the working directory
     * or the nearest directory above it that has one; {@code synthetic:tiny} when there is none.
     */
    static ModelRef parse(String arg) {
        if (arg == null || arg.isBlank()) {
            String home = System.getProperty("lathe.home");
            for (Path p = Path.of(home != null ? home : "").toAbsolutePath(); p != null; p = home != null ? null : p.getParent()) {
                Path dir = p.resolve("models").resolve(DEFAULT_MODEL);
                if (Files.isDirectory(dir)) return new Directory(dir);
            }
            return new Synthetic("tiny");
        }
        if (arg.startsWith("synthetic:")) {
            String preset = arg.substring("synthetic:".length());
            if (preset.isBlank()) throw new IllegalArgumentException("'synthetic:' needs a preset name, e.g. synthetic:tiny");
            return new Synthetic(preset);
        }
        Path p = Path.of(arg);
        if (!Files.exists(p)) {
            throw new IllegalArgumentException("model '" + arg + "' not found: give a Hugging Face checkpoint directory "
                    + "(with config.json and *.safetensors), or synthetic:<preset>");
        }
        if (!Files.isDirectory(p)) {
            throw new IllegalArgumentException("model '" + arg + "' is a file; give the checkpoint's directory");
        }
        return new Directory(p);
    }
}
