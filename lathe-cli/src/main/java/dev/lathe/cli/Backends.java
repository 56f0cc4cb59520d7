package dev.lathe.cli;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.BackendProvider;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;

/** Finds backends on the class path; "auto" takes the best available one. */
final class Backends {
    private Backends() {}

    static Backend create(String name, int threads) {
        List<BackendProvider> providers = new ArrayList<>();
        ServiceLoader.load(BackendProvider.class).forEach(providers::add);
        providers.sort(Comparator.comparingInt(BackendProvider::priority).reversed());
        if (name == null || name.equals("auto")) {
            for (BackendProvider p : providers) {
                if (p.unavailableReason().isEmpty()) return p.create(threads);
            }
            throw new IllegalStateException("no backend can run here; found: " + describe(providers));
        }
        for (BackendProvider p : providers) {
            if (p.name().equals(name)) {
                var reason = p.unavailableReason();
                if (reason.isPresent()) throw new IllegalStateException("backend '" + name + "' cannot run here: " + reason.get());
                return p.create(threads);
            }
        }
        throw new IllegalArgumentException("unknown backend '" + name + "'; available: " + describe(providers));
    }

    private static String describe(List<BackendProvider> providers) {
        if (providers.isEmpty()) return "none";
        var sb = new StringBuilder();
        for (BackendProvider p : providers) {
            if (!sb.isEmpty()) sb.append(", ");
            sb.append(p.name()).append(p.unavailableReason().map(r -> " (unavailable: " + r + ")").orElse(""));
        }
        return sb.toString();
    }
}
