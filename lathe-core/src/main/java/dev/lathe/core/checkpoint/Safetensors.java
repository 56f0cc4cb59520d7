package dev.lathe.core.checkpoint;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.Set;

/**
 * One memory-mapped {@code .safetensors} file. Tensor data are slices of the mapping, never copied onto
 * the Java heap; they stay valid until {@link #close()} unmaps the file. The file is validated when it is
 * opened (see {@link SafetensorsHeader}), so every tensor handed out lies inside the file.
 */
public final class Safetensors implements WeightSource {
    /** A header bigger than this is treated as corruption, not as a real header. */
    static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;

    private static final ValueLayout.OfLong U64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path file;
    private final Arena arena;
    private final Map<String, WeightTensor> tensors;
    private final Map<String, String> metadata;

    private Safetensors(Path file, Arena arena, Map<String, WeightTensor> tensors, Map<String, String> metadata) {
        this.file = file;
        this.arena = arena;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Maps and validates {@code file}; errors name the file, the problem and what to do. */
    public static Safetensors open(Path file) {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            String name = file.toString();
            if (size < 8) {
                throw new CheckpointException(name + ": the file is " + size + " bytes, shorter than the 8-byte"
                        + " header length every safetensors file starts with; it is empty or cut off, fetch it again");
            }
            MemorySegment whole = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerLen = whole.get(U64_LE, 0);
            if (headerLen < 0 || headerLen > MAX_HEADER_BYTES) {
                throw new CheckpointException(name + ": the header length field says " + Long.toUnsignedString(headerLen)
                        + " bytes, beyond the " + MAX_HEADER_BYTES + "-byte limit; the file is not safetensors or is corrupt");
            }
            if (8 + headerLen > size) {
                throw new CheckpointException(name + ": the header length field says " + headerLen + " bytes, but the file"
                        + " has only " + (size - 8) + " bytes after it; the file is truncated or not safetensors, fetch it again");
            }
            byte[] json = whole.asSlice(8, headerLen).toArray(ValueLayout.JAVA_BYTE);
            MemorySegment data = whole.asSlice(8 + headerLen);
            SafetensorsHeader header = SafetensorsHeader.parse(name, json, data.byteSize());
            Map<String, WeightTensor> tensors = new java.util.LinkedHashMap<>();
            for (SafetensorsHeader.Entry e : header.entries().values()) {
                tensors.put(e.name(), new WeightTensor(e.name(), e.dtype(), e.shape(), data.asSlice(e.begin(), e.byteSize())));
            }
            return new Safetensors(file, arena, java.util.Collections.unmodifiableMap(tensors), header.metadata());
        } catch (NoSuchFileException e) {
            arena.close();
            throw new CheckpointException(file + ": no such file", e);
        } catch (IOException e) {
            arena.close();
            throw new CheckpointException(file + ": cannot read the file (" + e + ")", e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    public Path file() { return file; }

    /** The header's {@code __metadata__} (empty when absent). */
    public Map<String, String> metadata() { return metadata; }

    @Override
    public boolean has(String name) { return tensors.containsKey(name); }

    @Override
    public WeightTensor get(String name) {
        WeightTensor t = tensors.get(name);
        if (t == null) {
            throw new CheckpointException("tensor '" + name + "' is not in " + file + " (it holds " + tensors.size()
                    + " tensors); check the name against the checkpoint's tensor list");
        }
        return t;
    }

    /** Tensor names in header order. */
    @Override
    public Set<String> names() { return tensors.keySet(); }

    /** Unmaps the file; tensors obtained from it must not be used afterwards. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) arena.close();
    }
}
