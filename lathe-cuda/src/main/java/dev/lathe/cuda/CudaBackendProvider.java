package dev.lathe.cuda;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.BackendProvider;
import dev.lathe.cuda.internal.BlasLt;
import dev.lathe.cuda.internal.CudaException;
import dev.lathe.cuda.internal.Driver;
import dev.lathe.cuda.internal.LibraryNotFoundException;

import java.util.Optional;

/** The NVIDIA GPU backend, preferred over the CPU when a GPU, the driver, cuBLASLt and the kernels are all there. */
public final class CudaBackendProvider implements BackendProvider {
    private volatile Optional<String> reason;

    @Override
    public String name() { return "cuda"; }

    @Override
    public int priority() { return 10; }

    @Override
    public Optional<String> unavailableReason() {
        Optional<String> r = reason;
        if (r == null) reason = r = probe();
        return r;
    }

    /** Checks, in order: kernels built, libcuda loadable, driver initialises, a GPU exists, cuBLASLt loadable. */
    static Optional<String> probe() {
        if (!KernelImages.built()) {
            return Optional.of("the CUDA kernels are not built: lathe-cuda was compiled without nvcc (CUDA 13 toolkit)");
        }
        Driver driver;
        try {
            driver = Driver.get();
        } catch (LibraryNotFoundException e) {
            return Optional.of("no NVIDIA driver library: " + e.getMessage());
        } catch (UnsatisfiedLinkError e) {
            return Optional.of("the NVIDIA driver library is unusable: " + e.getMessage());
        }
        try {
            driver.init();
            if (driver.deviceCount() == 0) return Optional.of("no GPU: the NVIDIA driver sees no device");
        } catch (CudaException e) {
            return Optional.of("no usable GPU: " + e.getMessage());
        }
        try {
            BlasLt.get();
        } catch (LibraryNotFoundException e) {
            return Optional.of("cuBLASLt missing: " + e.getMessage());
        } catch (UnsatisfiedLinkError e) {
            return Optional.of("cuBLASLt unusable: " + e.getMessage());
        }
        return Optional.empty();
    }

    /** A backend on GPU 0 ({@code threads} is for the host side and unused here). */
    @Override
    public Backend create(int threads) {
        unavailableReason().ifPresent(r -> {
            throw new IllegalStateException("cuda backend unavailable: " + r);
        });
        return new CudaBackend(0);
    }
}
