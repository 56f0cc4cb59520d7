package dev.lathe.cpu;

import dev.lathe.core.checkpoint.DType;

import java.util.EnumMap;
import java.util.Map;

/** The table of weight formats this backend can compute with, keyed by storage dtype. */
final class WeightFormats {
    private static final Map<DType, WeightFormat> TABLE = new EnumMap<>(DType.class);

    static {
        for (WeightFormat f : new WeightFormat[]{new F32Format(), new Bf16Format(), new F16Format()}) {
            TABLE.put(f.dtype(), f);
        }
    }

    private WeightFormats() {}

    /** The format for {@code dtype}, or an error naming the tensor and the supported formats. */
    static WeightFormat of(DType dtype, String tensorName) {
        WeightFormat f = TABLE.get(dtype);
        if (f == null) {
            throw new IllegalArgumentException("cpu backend: weight '" + tensorName + "' is " + dtype
                    + ", which this backend cannot compute with (supported: " + TABLE.keySet() + ")");
        }
        return f;
    }
}
