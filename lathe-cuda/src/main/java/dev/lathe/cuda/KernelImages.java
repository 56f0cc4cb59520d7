package dev.lathe.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Properties;

/**
 * The compiled kernels shipped as resources: one fatbin per {@code src/main/cuda/*.cu} under
 * {@code dev/lathe/cuda/kernels/}, and {@code kernels.properties} saying whether the build had nvcc.
 */
public final class KernelImages {
    public static final String DIRECTORY = "/dev/lathe/cuda/kernels/";
    /** The op families, one module (fatbin) each. */
    public static final List<String> MODULES =
            List.of("rows", "norm", "rope", "kv_cache", "attention", "flash_attention", "activation", "random",
                    "convert", "gemv", "select", "split_attention");

    private KernelImages() {}

    /** True when the build compiled the kernels (nvcc was found). */
    public static boolean built() {
        Properties p = new Properties();
        try (InputStream in = KernelImages.class.getResourceAsStream(DIRECTORY + "kernels.properties")) {
            if (in == null) return false;
            p.load(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return Boolean.parseBoolean(p.getProperty("built", "false"));
    }

    public static String resourceName(String module) { return DIRECTORY + module + ".fatbin"; }

    /** The fatbin of {@code module}, or an error saying the kernels were not built. */
    public static byte[] load(String module) {
        try (InputStream in = KernelImages.class.getResourceAsStream(resourceName(module))) {
            if (in == null) {
                throw new IllegalStateException("CUDA kernel image " + resourceName(module) + " is missing from the class path: "
                        + "lathe-cuda was built without nvcc; rebuild it with the CUDA 13 toolkit on PATH");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("reading " + resourceName(module), e);
        }
    }
}
