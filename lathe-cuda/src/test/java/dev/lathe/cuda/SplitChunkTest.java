package dev.lathe.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** How the split-context kernels cut contexts into pieces (CudaBackend.splitChunk), on an H100's 132 SMs. */
class SplitChunkTest {
    private static final long MMA_TARGET = 8L * 132, FLOAT32_TARGET = 4L * 132;

    private static int pieces(long blocks, long target, int span, int maxSplits) {
        int chunk = CudaBackend.splitChunk(blocks, target, span, maxSplits);
        assertThat(chunk % 32).as("chunk %d is a whole number of 32-key tiles", chunk).isZero();
        return (span + chunk - 1) / chunk;
    }

    @Test
    void enoughBlocksRunInOnePiece() {
        assertThat(pieces(1024 * 8, MMA_TARGET, 256, 64)).isEqualTo(1);
        assertThat(CudaBackend.splitChunk(1024 * 8, MMA_TARGET, 250, 64)).isEqualTo(256);
    }

    @Test
    void aLoneLongRowIsCutIntoPiecesOfAtLeast64Keys() {
        // 8 blocks against 1,056 wanted: 64 pieces asked for, at most one a 64 keys of 2048
        assertThat(pieces(8, MMA_TARGET, 2048, 64)).isEqualTo(32);
        assertThat(pieces(8, MMA_TARGET, 2048, 8)).isEqualTo(8);
    }

    @Test
    void eightyDecodeRowsTakeTwoPiecesOnTheTensorCoreKernelAndOneOnTheFloat32One() {
        // the case a review found: 640 blocks are below the one-warp kernel's aim, not the four-warp kernel's
        assertThat(pieces(80 * 8, MMA_TARGET, 297, 64)).isEqualTo(2);
        assertThat(pieces(80 * 8, FLOAT32_TARGET, 297, 64)).isEqualTo(1);
    }

    @Test
    void oneSplitAllowedMeansOnePiece() {
        assertThat(pieces(8, MMA_TARGET, 2048, 1)).isEqualTo(1);
        assertThat(CudaBackend.splitChunk(8, MMA_TARGET, 2047, 1)).isEqualTo(2048);
    }
}
