package dev.lathe.cuda;

import dev.lathe.cuda.internal.LibraryNotFoundException;
import dev.lathe.cuda.internal.NativeLibraries;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

/** Runs without a GPU: where CUDA libraries are looked for, and what a miss says. */
class NativeLibrariesTest {
    @Test
    void searchOrderIsCudaHomeThenLdLibraryPathThenUsrLocalCuda() {
        var dirs = NativeLibraries.searchDirectories(Map.of("CUDA_HOME", "/opt/cuda-x", "LD_LIBRARY_PATH", "/a/lib::/b/lib"));
        assertThat(dirs).containsExactly(Path.of("/opt/cuda-x/lib64"), Path.of("/opt/cuda-x/lib"), Path.of("/a/lib"),
                Path.of("/b/lib"), Path.of("/usr/local/cuda/lib64"));
    }

    @Test
    void missingLibraryErrorListsEveryPlaceSearched() {
        var env = Map.of("CUDA_HOME", "/opt/cuda-missing", "LD_LIBRARY_PATH", "/nowhere/one:/nowhere/two");
        try (Arena arena = Arena.ofConfined()) {
            LibraryNotFoundException e = catchThrowableOfType(LibraryNotFoundException.class,
                    () -> NativeLibraries.open("liblathe-absent.so.7", env, arena));
            assertThat(e).isNotNull();
            assertThat(e.getMessage()).contains("liblathe-absent.so.7", "/opt/cuda-missing/lib64", "/nowhere/one",
                    "/nowhere/two", "/usr/local/cuda/lib64", "system library path", "CUDA_HOME");
            assertThat(e.searched()).contains(Path.of("/nowhere/two"));
        }
    }

    @Test
    void libraryInAnLdLibraryPathDirectoryIsFoundThere(@TempDir Path dir) throws Exception {
        Path lib = Files.writeString(dir.resolve("libfake.so.3"), "not really a library");
        var where = NativeLibraries.locate("libfake.so.3", Map.of("LD_LIBRARY_PATH", "/nowhere:" + dir));
        assertThat(where.path()).isEqualTo(lib);
        assertThat(where.describe()).isEqualTo(lib.toString());
    }

    @Test
    void libraryFoundNowhereFallsBackToTheSystemPath() {
        var where = NativeLibraries.locate("liblathe-absent.so.7", Map.of());
        assertThat(where.path()).isNull();
        assertThat(where.describe()).isEqualTo("liblathe-absent.so.7 (system library path)");
    }
}
