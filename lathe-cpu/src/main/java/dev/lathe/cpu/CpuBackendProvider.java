package dev.lathe.cpu;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.BackendProvider;

import java.util.Optional;

/** Always usable; lowest priority, so a GPU backend wins when one is present. */
public final class CpuBackendProvider implements BackendProvider {
    @Override
    public String name() { return "cpu"; }

    @Override
    public int priority() { return 0; }

    @Override
    public Optional<String> unavailableReason() { return Optional.empty(); }

    /** {@code threads <= 0}: one per available processor. */
    @Override
    public Backend create(int threads) { return new CpuBackend(threads); }
}
