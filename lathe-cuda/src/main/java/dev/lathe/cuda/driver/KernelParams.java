package dev.lathe.cuda.driver;

import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The Java mirror of a kernel's parameter struct: a {@link StructLayout} with the padding a C compiler
 * inserts (each field at a multiple of its size, the whole rounded up to the largest alignment).
 * Pointers and {@code long long}s are 8-byte {@code long}s, {@code int}s and {@code float}s 4 bytes.
 */
public final class KernelParams {
    private final String kernel;
    private final StructLayout layout;
    private final List<ValueLayout> fields;
    private final long[] offsets;

    private KernelParams(String kernel, StructLayout layout, List<ValueLayout> fields, long[] offsets) {
        this.kernel = kernel;
        this.layout = layout;
        this.fields = fields;
        this.offsets = offsets;
    }

    /** A pointer field ({@code T*}, device address). */
    public static ValueLayout ptr(String name) { return JAVA_LONG.withName(name); }

    public static ValueLayout i64(String name) { return JAVA_LONG.withName(name); }

    public static ValueLayout i32(String name) { return JAVA_INT.withName(name); }

    public static ValueLayout f32(String name) { return JAVA_FLOAT.withName(name); }

    public static KernelParams struct(String kernel, ValueLayout... fields) {
        List<MemoryLayout> members = new ArrayList<>();
        long[] offsets = new long[fields.length];
        long offset = 0, maxAlign = 1;
        for (int i = 0; i < fields.length; i++) {
            long align = fields[i].byteAlignment();
            maxAlign = Math.max(maxAlign, align);
            long pad = (align - offset % align) % align;
            if (pad > 0) members.add(MemoryLayout.paddingLayout(pad));
            offset += pad;
            offsets[i] = offset;
            members.add(fields[i]);
            offset += fields[i].byteSize();
        }
        long tail = (maxAlign - offset % maxAlign) % maxAlign;
        if (tail > 0) members.add(MemoryLayout.paddingLayout(tail));
        StructLayout layout = MemoryLayout.structLayout(members.toArray(MemoryLayout[]::new)).withName(kernel + "_params");
        return new KernelParams(kernel, layout, List.of(fields), offsets);
    }

    public StructLayout layout() { return layout; }

    /** Writes {@code args} (Long for pointers and 64-bit ints, Integer, Float) into a new struct. */
    public MemorySegment write(Arena arena, Object... args) {
        if (args.length != fields.size()) {
            throw new IllegalArgumentException(kernel + ": " + args.length + " arguments for " + fields.size()
                    + " fields " + layout);
        }
        MemorySegment s = arena.allocate(layout);
        for (int i = 0; i < args.length; i++) {
            ValueLayout f = fields.get(i);
            Object a = args[i];
            switch (f) {
                case ValueLayout.OfLong l when a instanceof Long v -> s.set(l, offsets[i], v);
                case ValueLayout.OfInt l when a instanceof Integer v -> s.set(l, offsets[i], v);
                case ValueLayout.OfFloat l when a instanceof Float v -> s.set(l, offsets[i], v);
                default -> throw new IllegalArgumentException(kernel + ": field '" + f.name().orElse("?") + "' is "
                        + f + " but the argument is " + (a == null ? "null" : a.getClass().getSimpleName() + " " + a));
            }
        }
        return s;
    }
}
