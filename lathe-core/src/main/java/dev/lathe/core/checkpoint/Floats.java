package dev.lathe.core.checkpoint;

/**
 * Conversions between float32 and the 16-bit float formats checkpoints store: bfloat16 (the top 16 bits
 * of a float32) and IEEE half precision (float16). Values travel as the raw 16 bits in a {@code short}.
 */
public final class Floats {
    private Floats() {}

    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /**
     * Rounds to the nearest bfloat16, ties to even (as PyTorch does). Values beyond the bfloat16 range
     * become infinities; a NaN stays a NaN (quiet, same sign) instead of being rounded into an infinity.
     */
    public static short floatToBf16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) {
            return (short) ((bits >>> 16) | 0x0040);
        }
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7FFF + lsb) >>> 16);
    }

    public static float f16ToFloat(short bits) {
        return Float.float16ToFloat(bits);
    }

    /** Rounds to the nearest float16, ties to even; overflow gives an infinity, NaN stays NaN. */
    public static short floatToF16(float value) {
        return Float.floatToFloat16(value);
    }
}
