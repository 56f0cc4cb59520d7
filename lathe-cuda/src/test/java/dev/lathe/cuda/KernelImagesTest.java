package dev.lathe.cuda;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Runs without a GPU: the build's kernel resources. */
class KernelImagesTest {
    /** nvcc's fatbin container starts with 0xBA55ED50, little-endian. */
    private static final int FATBIN_MAGIC = 0xBA55ED50;

    @Test
    void everyModuleHasAFatbinResourceWhenTheBuildHadNvcc() {
        assumeTrue(KernelImages.built(), "lathe-cuda was built without nvcc");
        for (String module : KernelImages.MODULES) {
            byte[] image = KernelImages.load(module);
            assertThat(image.length).as(module).isGreaterThan(1024);
            assertThat(ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN).getInt(0)).as(module + " magic").isEqualTo(FATBIN_MAGIC);
        }
    }

    @Test
    void everyCudaSourceIsAKnownModule() throws Exception {
        var dir = java.nio.file.Path.of("src/main/cuda");
        assumeTrue(java.nio.file.Files.isDirectory(dir), "sources not at " + dir.toAbsolutePath());
        try (var files = java.nio.file.Files.list(dir)) {
            var modules = files.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".cu"))
                    .map(n -> n.substring(0, n.length() - 3)).sorted().toList();
            assertThat(modules).containsExactlyInAnyOrderElementsOf(KernelImages.MODULES);
        }
    }

    @Test
    void missingImageSaysTheKernelsWereNotBuilt() {
        assertThatThrownBy(() -> KernelImages.load("no_such_module"))
                .hasMessageContaining("no_such_module.fatbin").hasMessageContaining("nvcc");
    }
}
