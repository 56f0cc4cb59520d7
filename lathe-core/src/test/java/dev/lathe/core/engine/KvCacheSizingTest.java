package dev.lathe.core.engine;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.SyntheticPresets;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class KvCacheSizingTest {
    static final long GIB = 1L << 30;
    final dev.lathe.core.config.ModelConfig var8b = SyntheticPresets.get("llama-3-8b");

    @Test
    void aBlockHoldsKeysAndValuesOfEveryLayer() {
        // Llama-3-8B, BF16, 16 tokens: 2 x 32 layers x 16 x 8 KV heads x 128 dims x 2 bytes = 2 MiB
        assertThat(KvCacheSizing.bytesPerBlock(var8b, 16, DType.BF16)).isEqualTo(2L << 20);
    }

    @Test
    void theCacheTakesWhatTheWeightsAndTheReserveLeave() {
        // an 80 GiB card with 16 GiB of weights loaded: 64 GiB free, 8 GiB kept unused at utilization 0.9
        var memory = new Backend.Memory(64 * GIB, 80 * GIB);
        long activations = KvCacheSizing.activationBytes(var8b, 8192, 256);
        int blocks = KvCacheSizing.blocksThatFit(var8b, memory, 0.9, 16, DType.BF16, 8192, 256, 1);
        long expected = (64 * GIB - (long) (0.1 * 80 * GIB) - activations) / (2L << 20);
        assertThat(blocks).isEqualTo((int) expected);
        // the reserve is a few GiB at these shapes, not a share of the card
        assertThat(activations).isBetween(3 * GIB, 8 * GIB);
        // a smaller step budget sets less aside and leaves more blocks
        assertThat(KvCacheSizing.blocksThatFit(var8b, memory, 0.9, 16, DType.BF16, 2048, 256, 1)).isGreaterThan(blocks);
    }

    @Test
    void cachesMadeOneAfterAnotherSplitWhatIsLeftEvenly() {
        long free = 60 * GIB, total = 80 * GIB, perBlock = 2L << 20;
        int first = KvCacheSizing.blocksThatFit(var8b, new Backend.Memory(free, total), 0.9, 0.5, 16, DType.BF16, 8192, 256, 1);
        free -= first * perBlock;  // the first cache is allocated before the second is sized
        int second = KvCacheSizing.blocksThatFit(var8b, new Backend.Memory(free, total), 0.9, 1.0, 16, DType.BF16, 8192, 256, 1);
        assertThat(Math.abs(first - second)).isLessThanOrEqualTo(1);
        assertThat(first).isGreaterThan(0);
    }

    @Test
    void tooLittleMemoryForOneSequenceSaysWhatToChange() {
        var memory = new Backend.Memory(20 * GIB, 24 * GIB);
        assertThatThrownBy(() -> KvCacheSizing.blocksThatFit(var8b, memory, 0.9, 16, DType.BF16, 8192, 256, 8192))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("needs at least 8192 blocks")
                .hasMessageContaining("--gpu-memory-utilization");
        assertThatThrownBy(() -> KvCacheSizing.blocksThatFit(var8b, memory, 1.5, 16, DType.BF16, 8192, 256, 1))
                .hasMessageContaining("(0, 1]");
    }
}
