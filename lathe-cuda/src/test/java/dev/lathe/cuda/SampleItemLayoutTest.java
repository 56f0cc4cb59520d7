package dev.lathe.cuda;

import dev.lathe.core.backend.SampleSpec;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The ints CudaBackend packs for sample_rows lay out select.cu's SampleItem struct: each field, read at its
 * C offset (natural alignment) from the packed bytes, holds the spec's value. A slip here would feed the
 * kernel wrong parameters and show only on a GPU.
 */
class SampleItemLayoutTest {
    private record Field(String type, String name, int offset) {}

    @Test
    void packedItemsMatchTheCudaStruct() throws IOException {
        String source = Files.readString(Path.of("src/main/cuda/select.cu"));
        Matcher m = Pattern.compile("struct SampleItem \\{([^}]*)\\};").matcher(source);
        assertThat(m.find()).as("SampleItem in select.cu").isTrue();
        List<Field> fields = new ArrayList<>();
        int offset = 0;
        for (Matcher f = Pattern.compile("^\\s*([\\w ]+?)\\s+(\\w+);", Pattern.MULTILINE).matcher(m.group(1)); f.find(); ) {
            String type = f.group(1).trim();
            int size = switch (type) {
                case "int", "float" -> 4;
                case "double", "unsigned long long" -> 8;
                default -> throw new AssertionError("SampleItem field of a type this test does not know: " + type);
            };
            offset = (offset + size - 1) / size * size;
            fields.add(new Field(type, f.group(2), offset));
            offset += size;
        }
        assertThat(fields).extracting(Field::name).containsExactly("row", "inv_t", "top_k", "min_p", "top_p", "seed", "counter");
        int structBytes = (offset + 7) / 8 * 8;

        var specs = new SampleSpec[]{null, new SampleSpec(1.25f, 40, 0.875, 0.0625f, 0x1234_5678_9ABC_DEF0L, 0x0000_0007_0000_0009L), null,
                new SampleSpec(Float.POSITIVE_INFINITY, 0, 1, 0f, -3L, 1L << 40)};
        int[] packed = CudaBackend.packSampleItems(specs, 2);
        assertThat(packed.length * 4).as("bytes of two items").isEqualTo(2 * structBytes);
        ByteBuffer bytes = ByteBuffer.allocate(packed.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (int v : packed) bytes.putInt(v);
        int[] rows = {1, 3};
        for (int item = 0; item < 2; item++) {
            SampleSpec s = specs[rows[item]];
            int base = item * structBytes;
            for (Field f : fields) {
                int at = base + f.offset();
                Object got = switch (f.name()) {
                    case "row", "top_k" -> bytes.getInt(at);
                    case "inv_t", "min_p" -> bytes.getFloat(at);
                    case "top_p" -> bytes.getDouble(at);
                    default -> bytes.getLong(at);
                };
                Object want = switch (f.name()) {
                    case "row" -> rows[item];
                    case "inv_t" -> s.invTemperature();
                    case "top_k" -> s.topK();
                    case "min_p" -> s.minP();
                    case "top_p" -> s.topP();
                    case "seed" -> s.seed();
                    default -> s.counter();
                };
                assertThat(got).as("item %d field %s at byte %d", item, f.name(), f.offset()).isEqualTo(want);
            }
        }
    }
}
