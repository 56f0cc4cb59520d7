package dev.lathe.core.generate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class GraphBatchesTest {
    @Test
    void powersOfTwoThenStepsOf128UpToTheLargest() {
        assertThat(ModelRunner.graphBatchesUpTo(512)).containsExactly(1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512);
        assertThat(ModelRunner.graphBatchesUpTo(1024))
                .containsExactly(1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 640, 768, 896, 1024);
    }

    @Test
    void aLargestOffTheStepsIsRecordedToo() {
        assertThat(ModelRunner.graphBatchesUpTo(100)).containsExactly(1, 2, 4, 8, 16, 32, 64, 100);
        assertThat(ModelRunner.graphBatchesUpTo(1000)).endsWith(896, 1000);
        assertThat(ModelRunner.graphBatchesUpTo(1)).containsExactly(1);
    }

    @Test
    void aLargestBelowOneIsRejected() {
        assertThatThrownBy(() -> ModelRunner.graphBatchesUpTo(0)).hasMessageContaining("lathe.graphs.maxBatch is 0");
    }
}
