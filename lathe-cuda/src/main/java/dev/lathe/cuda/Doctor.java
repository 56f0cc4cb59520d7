package dev.lathe.cuda;

import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.checkpoint.WeightTensor;
import dev.lathe.cuda.driver.CudaContext;
import dev.lathe.cuda.driver.DeviceInfo;
import dev.lathe.cuda.internal.BlasLt;
import dev.lathe.cuda.internal.Driver;
import dev.lathe.cuda.internal.NativeLibraries;

import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.util.Locale;

/**
 * {@code lathe doctor}: what this machine offers the CUDA backend — driver, GPUs, libraries, kernels — and
 * whether a kernel and a cuBLASLt GEMM actually run and give the right numbers.
 */
public final class Doctor {
    private Doctor() {}

    public static void main(String[] args) {
        System.exit(report(System.out) ? 0 : 1);
    }

    /** Prints the report; true when the cuda backend is usable here. */
    public static boolean report(PrintStream out) {
        out.println("java: " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ")");
        out.println("library search path: " + NativeLibraries.searchDirectories(System.getenv()) + ", then the system path");
        out.println("kernels: " + (KernelImages.built() ? "built (" + String.join(", ", KernelImages.MODULES) + ")"
                : "NOT built (lathe-cuda was compiled without nvcc)"));
        Driver driver;
        try {
            driver = Driver.get();
            out.println("libcuda: " + driver.location());
            driver.init();
            int v = driver.driverVersion();
            out.println("driver: CUDA " + v / 1000 + "." + (v % 1000) / 10);
        } catch (RuntimeException | UnsatisfiedLinkError e) {
            out.println("libcuda: FAILED: " + e.getMessage());
            return false;
        }
        int count = driver.deviceCount();
        out.println("GPUs: " + count);
        for (int i = 0; i < count; i++) {
            try (CudaContext ctx = CudaContext.open(i)) {
                DeviceInfo d = ctx.info();
                long[] mem = ctx.memoryInfo();
                out.printf(Locale.ROOT, "  GPU %d: %s, compute capability %s, %d SMs, L2 %d MiB, memory %.1f GiB (%.1f GiB free)%n",
                        i, d.name(), d.computeCapability(), d.multiprocessors(), d.l2CacheBytes() >> 20,
                        d.totalMemoryBytes() / 1073741824.0, mem[0] / 1073741824.0);
            }
        }
        try {
            out.println("libcublasLt: " + BlasLt.get().location());
        } catch (RuntimeException | UnsatisfiedLinkError e) {
            out.println("libcublasLt: FAILED: " + e.getMessage());
            return false;
        }
        if (count == 0 || !KernelImages.built()) return false;
        try (CudaBackend backend = new CudaBackend(0)) {
            out.println("test kernel: " + (probeOk(backend) ? "ran, results correct" : "ran, WRONG results"));
            out.println("test GEMM (cuBLASLt): " + (gemmOk(backend) ? "ran, results correct" : "ran, WRONG results"));
            return probeOk(backend) && gemmOk(backend);
        } catch (RuntimeException e) {
            out.println("test kernel: FAILED: " + e);
            return false;
        }
    }

    private static boolean probeOk(CudaBackend backend) {
        int n = 1000;
        float[] got = backend.probe(n);
        for (int i = 0; i < n; i++) if (got[i] != 2f * i + 1f) return false;
        return true;
    }

    /** out = x @ w^T for small integers, exact in float32. */
    private static boolean gemmOk(CudaBackend backend) {
        int n = 3, in = 5, outF = 4;
        float[] w = new float[outF * in], x = new float[n * in];
        for (int i = 0; i < w.length; i++) w[i] = (i % 7) - 3;
        for (int i = 0; i < x.length; i++) x[i] = (i % 5) - 2;
        WeightTensor wt = new WeightTensor("doctor.w", DType.F32, new long[]{outF, in}, MemorySegment.ofArray(w));
        try (Weight weight = backend.load(wt); Tensor xt = backend.upload(x, n, in);
             Tensor ot = backend.allocate(DType.F32, n, outF)) {
            backend.linear(xt, weight, null, ot);
            float[] got = backend.download(ot);
            for (int r = 0; r < n; r++) {
                for (int o = 0; o < outF; o++) {
                    float e = 0;
                    for (int k = 0; k < in; k++) e += x[r * in + k] * w[o * in + k];
                    if (got[r * outF + o] != e) return false;
                }
            }
            return true;
        }
    }
}
