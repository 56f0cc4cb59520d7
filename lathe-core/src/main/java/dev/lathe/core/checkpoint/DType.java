package dev.lathe.core.checkpoint;

/** Element types of weights, activations and KV caches, with their safetensors names. */
public enum DType {
    F32("F32", 4),
    F16("F16", 2),
    BF16("BF16", 2),
    I32("I32", 4),
    I64("I64", 8),
    I8("I8", 1),
    U8("U8", 1),
    F8_E4M3("F8_E4M3", 1);

    private final String safetensorsName;
    private final int byteSize;

    DType(String safetensorsName, int byteSize) {
        this.safetensorsName = safetensorsName;
        this.byteSize = byteSize;
    }

    public String safetensorsName() { return safetensorsName; }

    public int byteSize() { return byteSize; }

    /** The dtype a safetensors header names, or an error that lists the known names. */
    public static DType fromSafetensors(String name) {
        for (DType t : values()) {
            if (t.safetensorsName.equals(name)) return t;
        }
        throw new IllegalArgumentException("unknown safetensors dtype '" + name + "' (known: F32, F16, BF16, I32, I64, I8, U8, F8_E4M3)");
    }

    /** HF {@code torch_dtype} strings: "bfloat16", "float16", "float32". */
    public static DType fromTorch(String name) {
        return switch (name) {
            case "bfloat16" -> BF16;
            case "float16", "half" -> F16;
            case "float32", "float" -> F32;
            default -> throw new IllegalArgumentException("unsupported torch_dtype '" + name + "' (supported: bfloat16, float16, float32)");
        };
    }
}
