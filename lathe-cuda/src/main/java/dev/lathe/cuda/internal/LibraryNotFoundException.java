package dev.lathe.cuda.internal;

import java.nio.file.Path;
import java.util.List;

/** A CUDA library that could not be opened, with every place that was searched. */
public final class LibraryNotFoundException extends RuntimeException {
    private final String library;
    private final List<Path> searched;

    public LibraryNotFoundException(String library, List<Path> searched, String cause) {
        super(library + " not found; looked in " + searched + " and the system library path"
                + (cause == null ? "" : " (" + cause + ")")
                + ". Install the NVIDIA driver / CUDA 13 libraries, or point CUDA_HOME or LD_LIBRARY_PATH at them.");
        this.library = library;
        this.searched = List.copyOf(searched);
    }

    public String library() { return library; }

    public List<Path> searched() { return searched; }
}
