package dev.lathe.core.checkpoint;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SafetensorsTest {
    @TempDir
    Path tmp;

    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Reads a tensor's elements back as floats, decoding its dtype. */
    static float[] floats(WeightTensor t) {
        float[] out = new float[(int) t.numElements()];
        for (int i = 0; i < out.length; i++) {
            out[i] = switch (t.dtype()) {
                case F32 -> t.data().getAtIndex(F32, i);
                case F16 -> Floats.f16ToFloat(t.data().getAtIndex(I16, i));
                case BF16 -> Floats.bf16ToFloat(t.data().getAtIndex(I16, i));
                default -> throw new AssertionError(t.dtype());
            };
        }
        return out;
    }

    /** What {@code v} becomes when stored as {@code dtype}. */
    static float stored(DType dtype, float v) {
        return switch (dtype) {
            case F32 -> v;
            case F16 -> Floats.f16ToFloat(Floats.floatToF16(v));
            case BF16 -> Floats.bf16ToFloat(Floats.floatToBf16(v));
            default -> throw new AssertionError(dtype);
        };
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16", "BF16"})
    void floatTensorsRoundTrip(DType dtype) {
        float[] a = {0.5f, -1.25f, 3.0f, 0.1f, -0.3333f, 1024.0f};
        float[] b = new float[7];
        for (int i = 0; i < b.length; i++) b[i] = (float) Math.sin(i + 1);
        Path file = tmp.resolve("m.safetensors");
        new SafetensorsWriter()
                .add("a", dtype, new long[]{2, 3}, a)
                .add("b.weight", dtype, new long[]{7}, b)
                .metadata("format", "pt")
                .write(file);

        try (Safetensors st = Safetensors.open(file)) {
            assertThat(st.names()).containsExactly("a", "b.weight");
            assertThat(st.metadata()).isEqualTo(Map.of("format", "pt"));
            WeightTensor ta = st.get("a");
            assertThat(ta.dtype()).isEqualTo(dtype);
            assertThat(ta.shape()).containsExactly(2, 3);
            assertThat(ta.data().isMapped()).isTrue();
            float[] gotA = floats(ta);
            float[] gotB = floats(st.get("b.weight"));
            for (int i = 0; i < a.length; i++) assertThat(gotA[i]).isEqualTo(stored(dtype, a[i]));
            for (int i = 0; i < b.length; i++) assertThat(gotB[i]).isEqualTo(stored(dtype, b[i]));
        }
    }

    @Test
    void segmentsAreWrittenByteForByteAndTheDataAreaIsAligned() throws IOException {
        MemorySegment ints = MemorySegment.ofArray(new int[]{1, -2, 3, 0x7FFFFFFF});
        Path file = tmp.resolve("i.safetensors");
        new SafetensorsWriter().add("ids", DType.I32, new long[]{4}, ints).write(file);
        long headerLen = ByteBuffer.wrap(Files.readAllBytes(file), 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertThat(headerLen % 8).isZero();
        try (Safetensors st = Safetensors.open(file)) {
            WeightTensor t = st.get("ids");
            assertThat(t.data().toArray(ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN)))
                    .containsExactly(1, -2, 3, 0x7FFFFFFF);
            assertThat(t.data().address() % 8).isZero();
        }
    }

    @Test
    void scalarAndEmptyTensorsAreAllowed() {
        Path file = tmp.resolve("s.safetensors");
        new SafetensorsWriter()
                .add("scalar", DType.F32, new long[]{}, new float[]{42f})
                .add("empty", DType.BF16, new long[]{0, 5}, new float[0])
                .write(file);
        try (Safetensors st = Safetensors.open(file)) {
            assertThat(floats(st.get("scalar"))).containsExactly(42f);
            assertThat(st.get("empty").data().byteSize()).isZero();
            assertThat(st.metadata()).isEmpty();
        }
    }

    @Test
    void missingTensorErrorNamesTensorAndFile() {
        Path file = tmp.resolve("x.safetensors");
        new SafetensorsWriter().add("a", DType.F32, new long[]{1}, new float[]{1}).write(file);
        try (Safetensors st = Safetensors.open(file)) {
            assertThatThrownBy(() -> st.get("lm_head.weight"))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("'lm_head.weight'").hasMessageContaining("x.safetensors");
        }
    }

    @Test
    void closeUnmapsTheFile() {
        Path file = tmp.resolve("c.safetensors");
        new SafetensorsWriter().add("a", DType.F32, new long[]{1}, new float[]{1}).write(file);
        Safetensors st = Safetensors.open(file);
        MemorySegment data = st.get("a").data();
        st.close();
        st.close(); // closing twice is harmless
        assertThatThrownBy(() -> data.get(ValueLayout.JAVA_BYTE, 0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void writerRejectsBytesThatDoNotMatchTheShape() {
        assertThatThrownBy(() -> new SafetensorsWriter().add("w", DType.BF16, new long[]{3},
                MemorySegment.ofArray(new byte[4])))
                .hasMessageContaining("'w'").hasMessageContaining("needs 6 bytes, got 4");
        assertThatThrownBy(() -> new SafetensorsWriter().add("w", DType.I8, new long[]{1}, new float[]{1}))
                .hasMessageContaining("cannot convert floats to I8");
    }

    // ---- corrupt files ----------------------------------------------------------------------------

    private Path raw(String name, long headerLen, byte[] header, int dataBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(8 + header.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(headerLen).put(header);
        Path file = tmp.resolve(name);
        Files.write(file, b.array());
        return file;
    }

    private Path raw(String name, String header, int dataBytes) throws IOException {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        return raw(name, json.length, json, dataBytes);
    }

    private static org.assertj.core.api.AbstractThrowableAssert<?, ?> openFails(Path file) {
        return assertThatThrownBy(() -> Safetensors.open(file))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining(file.toString());
    }

    @Test
    void fileShorterThanTheLengthFieldIsRejected() throws IOException {
        Path file = tmp.resolve("short.safetensors");
        Files.write(file, new byte[]{1, 2, 3, 4, 5});
        openFails(file).hasMessageContaining("5 bytes, shorter than the 8-byte header length");
    }

    @Test
    void missingFileIsRejected() {
        openFails(tmp.resolve("nope.safetensors")).hasMessageContaining("no such file");
    }

    @Test
    void headerLengthBeyondTheFileIsRejected() throws IOException {
        Path file = raw("beyond.safetensors", 1000, "{}".getBytes(StandardCharsets.UTF_8), 0);
        openFails(file).hasMessageContaining("header length field says 1000 bytes")
                .hasMessageContaining("only 2 bytes after it");
    }

    @Test
    void absurdHeaderLengthIsRejected() throws IOException {
        openFails(raw("huge.safetensors", 1L << 40, "{}".getBytes(StandardCharsets.UTF_8), 0))
                .hasMessageContaining("says 1099511627776 bytes").hasMessageContaining("limit");
        openFails(raw("negative.safetensors", -8, "{}".getBytes(StandardCharsets.UTF_8), 0))
                .hasMessageContaining("says 18446744073709551608 bytes");
    }

    @Test
    void headerThatIsNotJsonIsRejected() throws IOException {
        openFails(raw("garbage.safetensors", "{\"a\": [1, 2", 0)).hasMessageContaining("not valid JSON");
        openFails(raw("array.safetensors", "[1, 2]", 0)).hasMessageContaining("not a JSON object");
        openFails(raw("dup.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                        + "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2))
                .hasMessageContaining("not valid JSON").hasMessageContaining("Duplicate field 'a'");
    }

    @Test
    void unknownDtypeIsRejected() throws IOException {
        openFails(raw("dtype.safetensors", "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2))
                .hasMessageContaining("tensor 'w'").hasMessageContaining("unknown safetensors dtype 'Q4_K'");
    }

    @Test
    void offsetsOutOfOrderAreRejected() throws IOException {
        openFails(raw("order.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4))
                .hasMessageContaining("tensor 'w'").hasMessageContaining("[4, 0] out of order");
    }

    @Test
    void offsetsOutsideTheDataAreaAreRejected() throws IOException {
        openFails(raw("neg.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4))
                .hasMessageContaining("tensor 'w'").hasMessageContaining("before the start of the data area");
    }

    @Test
    void overlappingTensorsAreRejected() throws IOException {
        String header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
        openFails(raw("overlap.safetensors", header, 12))
                .hasMessageContaining("'a' [0, 8)").hasMessageContaining("'b' [4, 12)").hasMessageContaining("overlap");
    }

    @Test
    void byteSizeThatDisagreesWithTheShapeIsRejected() throws IOException {
        openFails(raw("size.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,4],\"data_offsets\":[0,8]}}", 8))
                .hasMessageContaining("tensor 'w' is BF16 [2, 4], which needs 16 bytes")
                .hasMessageContaining("span 8 bytes");
    }

    @Test
    void truncatedFileIsRejected() throws IOException {
        Path good = tmp.resolve("good.safetensors");
        new SafetensorsWriter()
                .add("a", DType.F32, new long[]{4}, new float[4])
                .add("b", DType.F32, new long[]{4}, new float[4])
                .write(good);
        byte[] bytes = Files.readAllBytes(good);
        Path cut = tmp.resolve("cut.safetensors");
        Files.write(cut, java.util.Arrays.copyOf(bytes, bytes.length - 5));
        openFails(cut).hasMessageContaining("truncated")
                .hasMessageContaining("describes 32 bytes of tensor data")
                .hasMessageContaining("tensor 'b' ends at 32").hasMessageContaining("only 27 bytes")
                .hasMessageContaining("fetch the file again");
    }

    @Test
    void malformedEntriesAreRejected() throws IOException {
        openFails(raw("meta.safetensors", "{\"__metadata__\":{\"format\":1}}", 0))
                .hasMessageContaining("'__metadata__' value for 'format' is 1, not a string");
        openFails(raw("noshape.safetensors", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1))
                .hasMessageContaining("tensor 'w' has no 'shape' array");
        openFails(raw("offs.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1))
                .hasMessageContaining("expected 2 numbers");
    }
}
