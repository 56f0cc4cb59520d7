package dev.lathe.core.backend;

import java.util.Optional;

/**
 * Finds and creates a backend; registered through {@link java.util.ServiceLoader}. A provider that
 * cannot run here says why (no driver, no GPU, library not found and where it looked).
 */
public interface BackendProvider {
    /** "cpu", "cuda". */
    String name();

    /** Higher wins when the user names no backend. */
    int priority();

    /** Empty when usable, else the reason it is not. */
    Optional<String> unavailableReason();

    Backend create(int threads);
}
