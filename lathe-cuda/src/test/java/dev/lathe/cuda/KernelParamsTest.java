package dev.lathe.cuda;

import dev.lathe.cuda.driver.KernelParams;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout.PathElement;

import static dev.lathe.cuda.driver.KernelParams.f32;
import static dev.lathe.cuda.driver.KernelParams.i32;
import static dev.lathe.cuda.driver.KernelParams.i64;
import static dev.lathe.cuda.driver.KernelParams.ptr;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Runs without a GPU: parameter structs are laid out as a C compiler lays them out. */
class KernelParamsTest {
    @Test
    void fieldsAreAlignedToTheirSizeAndTheStructToItsLargestField() {
        KernelParams p = KernelParams.struct("k", i32("a"), ptr("b"), i32("c"), f32("d"), i32("e"));
        assertThat(p.layout().byteOffset(PathElement.groupElement("a"))).isEqualTo(0);
        assertThat(p.layout().byteOffset(PathElement.groupElement("b"))).isEqualTo(8);
        assertThat(p.layout().byteOffset(PathElement.groupElement("c"))).isEqualTo(16);
        assertThat(p.layout().byteOffset(PathElement.groupElement("d"))).isEqualTo(20);
        assertThat(p.layout().byteOffset(PathElement.groupElement("e"))).isEqualTo(24);
        assertThat(p.layout().byteSize()).isEqualTo(32);
    }

    @Test
    void writeStoresEachArgumentAtItsField() {
        KernelParams p = KernelParams.struct("k", ptr("x"), i64("n"), f32("eps"), i32("dtype"));
        try (Arena arena = Arena.ofConfined()) {
            var s = p.write(arena, 0x1234_5678_9AL, 99L, 1.5f, 2);
            assertThat(s.get(JAVA_LONG, 0)).isEqualTo(0x1234_5678_9AL);
            assertThat(s.get(JAVA_LONG, 8)).isEqualTo(99L);
            assertThat(s.get(JAVA_FLOAT, 16)).isEqualTo(1.5f);
            assertThat(s.get(JAVA_INT, 20)).isEqualTo(2);
        }
    }

    @Test
    void argumentOfTheWrongTypeNamesTheField() {
        KernelParams p = KernelParams.struct("rms_norm", ptr("x"), f32("eps"));
        try (Arena arena = Arena.ofConfined()) {
            assertThatThrownBy(() -> p.write(arena, 1L, 1e-5)).hasMessageContaining("rms_norm").hasMessageContaining("eps")
                    .hasMessageContaining("Double");
            assertThatThrownBy(() -> p.write(arena, 1L)).hasMessageContaining("1 arguments for 2 fields");
        }
    }
}
