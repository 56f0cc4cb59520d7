package dev.lathe.server;

import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.engine.EngineConfig;
import dev.lathe.core.engine.LlmEngine;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** What `lathe serve`'s engine options become in the engine it builds. */
class EngineFactoryTest {
    @Test
    void stepLimitsAndAdmissionPolicyReachTheEngine() throws Exception {
        var settings = new EngineFactory.Settings(256, 16, 8, DType.F32, 0.9, 1.0, 3, 300, true, 0.05);
        try (var engine = (LlmEngine) EngineFactory.DEFAULT.create("m", TestModels.model(), settings)) {
            EngineConfig c = engine.config();
            assertThat(c.maxNumSeqs()).isEqualTo(3);
            assertThat(c.maxNumBatchedTokens()).isEqualTo(300);
            assertThat(c.guaranteeNoEvict()).isTrue();
            assertThat(c.schedulerConfig().guaranteeNoEvict()).isTrue();
            assertThat(c.schedulerConfig().admissionWatermark()).isEqualTo(0.05);
        }
    }

    @Test
    void zeroLimitsMeanTheDefaults() throws Exception {
        var settings = new EngineFactory.Settings(256, 16, 8, DType.F32);
        try (var engine = (LlmEngine) EngineFactory.DEFAULT.create("m", TestModels.model(), settings)) {
            EngineConfig c = engine.config(), d = EngineConfig.defaults(256);
            assertThat(c.maxNumSeqs()).isEqualTo(d.maxNumSeqs());
            assertThat(c.maxNumBatchedTokens()).isEqualTo(d.maxNumBatchedTokens());
            assertThat(c.guaranteeNoEvict()).isFalse();
            assertThat(c.admissionWatermark()).isEqualTo(EngineConfig.DEFAULT_ADMISSION_WATERMARK);
        }
    }

    @Test
    void negativeLimitsAreRefused() {
        assertThatThrownBy(() -> new EngineFactory.Settings(256, 16, 8, DType.F32, 0.9, 1.0, -1, 0, false))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("maxNumSeqs=-1");
        assertThatThrownBy(() -> new EngineFactory.Settings(256, 16, 8, DType.F32, 0.9, 1.0, 0, 0, false, 1.0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("admissionWatermark=1.0");
    }
}
