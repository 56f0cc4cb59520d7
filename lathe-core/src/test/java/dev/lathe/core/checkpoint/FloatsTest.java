package dev.lathe.core.checkpoint;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class FloatsTest {

    @Test
    void bf16IsTheTopHalfOfFloat32() {
        assertThat(Floats.bf16ToFloat((short) 0x3F80)).isEqualTo(1.0f);
        assertThat(Floats.bf16ToFloat((short) 0xC000)).isEqualTo(-2.0f);
        assertThat(Floats.bf16ToFloat((short) 0x7F80)).isEqualTo(Float.POSITIVE_INFINITY);
        assertThat(Floats.bf16ToFloat((short) 0x0001)).isEqualTo(Float.intBitsToFloat(0x00010000));
    }

    @Test
    void everyBf16SurvivesARoundTrip() {
        for (int bits = 0; bits < 0x10000; bits++) {
            float f = Floats.bf16ToFloat((short) bits);
            if (Float.isNaN(f)) continue;
            assertThat(Floats.floatToBf16(f) & 0xFFFF).as("bits %04x", bits).isEqualTo(bits);
        }
    }

    @Test
    void floatToBf16RoundsToNearestTiesToEven() {
        // 1 + 2^-8 is exactly halfway between bf16 1.0 (0x3F80) and 1.0078125 (0x3F81): even wins.
        assertThat(Floats.floatToBf16(Float.intBitsToFloat(0x3F808000))).isEqualTo((short) 0x3F80);
        // halfway above an odd mantissa rounds up to the even one
        assertThat(Floats.floatToBf16(Float.intBitsToFloat(0x3F818000))).isEqualTo((short) 0x3F82);
        // just above halfway rounds up, just below rounds down
        assertThat(Floats.floatToBf16(Float.intBitsToFloat(0x3F808001))).isEqualTo((short) 0x3F81);
        assertThat(Floats.floatToBf16(Float.intBitsToFloat(0x3F807FFF))).isEqualTo((short) 0x3F80);
        // the largest float rounds beyond the bf16 range to infinity
        assertThat(Floats.floatToBf16(Float.MAX_VALUE)).isEqualTo((short) 0x7F80);
        assertThat(Floats.floatToBf16(-0.0f)).isEqualTo((short) 0x8000);
    }

    @Test
    void floatToBf16KeepsNaN() {
        // a NaN whose payload sits only in the low 16 bits would truncate to infinity
        float lowPayloadNaN = Float.intBitsToFloat(0x7F800001);
        assertThat(Float.isNaN(Floats.bf16ToFloat(Floats.floatToBf16(lowPayloadNaN)))).isTrue();
        assertThat(Float.isNaN(Floats.bf16ToFloat(Floats.floatToBf16(Float.NaN)))).isTrue();
        short negative = Floats.floatToBf16(Float.intBitsToFloat(0xFFC00000));
        assertThat(negative & 0x8000).isEqualTo(0x8000);
    }

    @Test
    void f16ConvertsKnownValues() {
        assertThat(Floats.f16ToFloat((short) 0x3C00)).isEqualTo(1.0f);
        assertThat(Floats.f16ToFloat((short) 0xC000)).isEqualTo(-2.0f);
        assertThat(Floats.f16ToFloat((short) 0x7BFF)).isEqualTo(65504.0f);
        assertThat(Floats.f16ToFloat((short) 0x0001)).isEqualTo((float) Math.pow(2, -24));
        assertThat(Floats.floatToF16(65504.0f)).isEqualTo((short) 0x7BFF);
        assertThat(Floats.floatToF16(1e6f)).isEqualTo((short) 0x7C00);
        // 1 + 2^-11 is halfway between 1.0 and the next half: ties to even keep 1.0
        assertThat(Floats.floatToF16(1.0f + (float) Math.pow(2, -11))).isEqualTo((short) 0x3C00);
        assertThat(Float.isNaN(Floats.f16ToFloat(Floats.floatToF16(Float.NaN)))).isTrue();
    }

    @Test
    void everyF16SurvivesARoundTrip() {
        for (int bits = 0; bits < 0x10000; bits++) {
            float f = Floats.f16ToFloat((short) bits);
            if (Float.isNaN(f)) continue;
            assertThat(Floats.floatToF16(f) & 0xFFFF).as("bits %04x", bits).isEqualTo(bits);
        }
    }
}
