package dev.lathe.cli;

import dev.lathe.core.backend.BackendProvider;
import dev.lathe.cuda.Doctor;
import picocli.CommandLine.Command;

import java.util.ServiceLoader;
import java.util.concurrent.Callable;

/** {@code lathe doctor}: what this machine can run: backends, driver, GPUs, libraries, a test kernel. */
@Command(name = "doctor", description = "Check the driver, libraries and GPUs; run a test kernel.")
final class DoctorCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        System.out.println("backends:");
        for (BackendProvider p : ServiceLoader.load(BackendProvider.class)) {
            System.out.println("  " + p.name() + ": " + p.unavailableReason().map(r -> "unavailable (" + r + ")").orElse("available"));
        }
        System.out.println();
        boolean ok = Doctor.report(System.out);
        return ok ? 0 : 1;
    }
}
