package dev.lathe.cuda.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * Finds the CUDA shared libraries. Search order: {@code $CUDA_HOME/lib64}, {@code $CUDA_HOME/lib},
 * each {@code LD_LIBRARY_PATH} entry, {@code /usr/local/cuda/lib64}, then the system library path
 * (whatever {@code dlopen} of the bare name finds: ldconfig's cache, /usr/lib/x86_64-linux-gnu, ...).
 */
public final class NativeLibraries {
    /** What the search found: the file, or null when only the system path is left to try. */
    public record Location(String fileName, Path path, List<Path> searched) {
        /** "/usr/local/cuda/lib64/libcublasLt.so.13" or "libcuda.so.1 (system library path)". */
        public String describe() { return path != null ? path.toString() : fileName + " (system library path)"; }
    }

    private NativeLibraries() {}

    /** The directories searched before the system path, in order, without duplicates. */
    public static List<Path> searchDirectories(Map<String, String> env) {
        LinkedHashSet<Path> dirs = new LinkedHashSet<>();
        String cudaHome = env.get("CUDA_HOME");
        if (cudaHome != null && !cudaHome.isBlank()) {
            dirs.add(Path.of(cudaHome, "lib64"));
            dirs.add(Path.of(cudaHome, "lib"));
        }
        String ld = env.get("LD_LIBRARY_PATH");
        if (ld != null) {
            for (String entry : ld.split(":")) {
                if (!entry.isBlank()) dirs.add(Path.of(entry));
            }
        }
        dirs.add(Path.of("/usr/local/cuda/lib64"));
        return new ArrayList<>(dirs);
    }

    /** Looks for {@code fileName} in {@link #searchDirectories}; path null if none holds it. */
    public static Location locate(String fileName, Map<String, String> env) {
        List<Path> dirs = searchDirectories(env);
        for (Path dir : dirs) {
            Path candidate = dir.resolve(fileName);
            if (Files.isRegularFile(candidate)) return new Location(fileName, candidate, dirs);
        }
        return new Location(fileName, null, dirs);
    }

    /**
     * Opens {@code fileName} for the lifetime of {@code arena}: the first directory that holds it, else
     * the system library path.
     *
     * @throws LibraryNotFoundException naming every place it looked
     */
    public static SymbolLookup open(String fileName, Map<String, String> env, Arena arena) {
        Location where = locate(fileName, env);
        try {
            return where.path() != null
                    ? SymbolLookup.libraryLookup(where.path(), arena)
                    : SymbolLookup.libraryLookup(fileName, arena);
        } catch (IllegalArgumentException e) {
            throw new LibraryNotFoundException(fileName, where.searched(), e.getMessage());
        }
    }

    /** Where {@code fileName} was found, or a {@link LibraryNotFoundException}; opens it to be sure. */
    public static Location find(String fileName, Map<String, String> env) {
        Location where = locate(fileName, env);
        try (Arena arena = Arena.ofConfined()) {
            open(fileName, env, arena);
        }
        return where;
    }
}
