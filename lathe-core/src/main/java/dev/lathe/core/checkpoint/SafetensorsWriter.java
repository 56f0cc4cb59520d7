package dev.lathe.core.checkpoint;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Collects tensors and writes them as one {@code .safetensors} file, in the order they were added. The
 * header is padded with spaces to a multiple of 8 bytes so that the data area (and every tensor whose
 * offset is a multiple of its element size) is aligned once the file is mapped.
 */
public final class SafetensorsWriter {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static final long CHUNK = 1L << 26;

    private record Pending(String name, DType dtype, long[] shape, MemorySegment bytes) {}

    private final Map<String, Pending> tensors = new LinkedHashMap<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    /** Adds a tensor whose bytes are already in {@code dtype}'s little-endian encoding. */
    public SafetensorsWriter add(String name, DType dtype, long[] shape, MemorySegment bytes) {
        long expected = numElements(shape) * dtype.byteSize();
        if (bytes.byteSize() != expected) {
            throw new IllegalArgumentException("tensor '" + name + "': " + dtype + " " + Arrays.toString(shape)
                    + " needs " + expected + " bytes, got " + bytes.byteSize());
        }
        if (name.equals(SafetensorsHeader.METADATA_KEY)) {
            throw new IllegalArgumentException("'" + name + "' is reserved for the header metadata");
        }
        if (tensors.putIfAbsent(name, new Pending(name, dtype, shape.clone(), bytes)) != null) {
            throw new IllegalArgumentException("tensor '" + name + "' was already added");
        }
        return this;
    }

    /** Adds float values converted (round to nearest even) to F32, F16 or BF16. */
    public SafetensorsWriter add(String name, DType dtype, long[] shape, float[] values) {
        if (numElements(shape) != values.length) {
            throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape) + " holds "
                    + numElements(shape) + " values, got " + values.length);
        }
        MemorySegment out = MemorySegment.ofArray(new byte[values.length * dtype.byteSize()]);
        switch (dtype) {
            case F32 -> {
                for (int i = 0; i < values.length; i++) out.setAtIndex(F32_LE, i, values[i]);
            }
            case F16 -> {
                for (int i = 0; i < values.length; i++) out.setAtIndex(I16_LE, i, Floats.floatToF16(values[i]));
            }
            case BF16 -> {
                for (int i = 0; i < values.length; i++) out.setAtIndex(I16_LE, i, Floats.floatToBf16(values[i]));
            }
            default -> throw new IllegalArgumentException("tensor '" + name + "': cannot convert floats to " + dtype
                    + " (supported: F32, F16, BF16)");
        }
        return add(name, dtype, shape, out);
    }

    public SafetensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    /** Writes the file, replacing any existing one. */
    public void write(Path file) {
        ObjectNode header = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode meta = header.putObject(SafetensorsHeader.METADATA_KEY);
            metadata.forEach(meta::put);
        }
        long offset = 0;
        List<MemorySegment> data = new ArrayList<>();
        for (Pending t : tensors.values()) {
            ObjectNode entry = header.putObject(t.name());
            entry.put("dtype", t.dtype().safetensorsName());
            ArrayNode shape = entry.putArray("shape");
            for (long d : t.shape()) shape.add(d);
            long size = t.bytes().byteSize();
            entry.putArray("data_offsets").add(offset).add(offset + size);
            offset += size;
            data.add(t.bytes());
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(json);
        while (head.hasRemaining()) head.put((byte) ' ');
        head.flip();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(ch, head);
            for (MemorySegment seg : data) {
                // a ByteBuffer holds at most 2 GiB, so large tensors (a 70B embedding) go in chunks; heap
                // segments over int[], float[]... have no ByteBuffer view and are copied chunk by chunk
                for (long pos = 0; pos < seg.byteSize(); pos += CHUNK) {
                    MemorySegment part = seg.asSlice(pos, Math.min(CHUNK, seg.byteSize() - pos));
                    ByteBuffer buf = part.isNative() || part.heapBase().orElse(null) instanceof byte[]
                            ? part.asByteBuffer() : ByteBuffer.wrap(part.toArray(ValueLayout.JAVA_BYTE));
                    writeFully(ch, buf);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    private static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
        while (buf.hasRemaining()) ch.write(buf);
    }

    private static long numElements(long[] shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            n = Math.multiplyExact(n, d);
        }
        return n;
    }
}
