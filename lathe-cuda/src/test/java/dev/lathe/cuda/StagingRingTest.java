package dev.lathe.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The staging ring against a model stream: each fence completes when the model's "device" has run the copies
 * queued before it. The ring must never hand out bytes a still-queued copy reads, and must not wait when the
 * bytes it hands out are free.
 */
class StagingRingTest {
    /** A stream whose queued copies complete only when {@link #runUpTo} says so. */
    private static final class ModelStream implements StagingRing.Fences<Integer> {
        final List<long[]> copies = new ArrayList<>();  // queued copies: {offset, bytes}
        int completed;                                  // copies [0, completed) have run
        int waits, recycled;

        @Override
        public Integer record() { return copies.size(); }  // completes once every copy queued so far has run

        @Override
        public void await(Integer fence) {
            waits++;
            runUpTo(fence);
        }

        @Override
        public boolean isComplete(Integer fence) { return completed >= fence; }

        @Override
        public void recycle(Integer fence) { recycled++; }

        void runUpTo(int n) { completed = Math.max(completed, n); }

        /** Whether [offset, offset + bytes) overlaps a copy that has not run. */
        boolean overlapsQueued(long offset, long bytes) {
            for (int i = completed; i < copies.size(); i++) {
                long[] c = copies.get(i);
                if (offset < c[0] + c[1] && c[0] < offset + bytes) return true;
            }
            return false;
        }
    }

    @Test
    void smallCopiesBehindALongKernelDoNotWait() {
        var stream = new ModelStream();
        var ring = new StagingRing<>(1 << 20, stream);
        // a step's worth of small copies while nothing completes: they fit the ring side by side
        long last = -1;
        for (int i = 0; i < 100; i++) {
            long at = ring.reserve(4000);
            assertThat(at % StagingRing.ALIGN).isZero();
            assertThat(at).isGreaterThan(last);
            assertThat(at + 4000).isLessThanOrEqualTo(ring.capacity());
            last = at;
            stream.copies.add(new long[] {at, 4000});
            ring.queued();
        }
        assertThat(stream.waits).isZero();
        assertThat(ring.pendingRanges()).isEqualTo(100);
    }

    @Test
    void aCopyThatLapsTheRingWaitsOnlyForTheRangesItReuses() {
        var stream = new ModelStream();
        var ring = new StagingRing<>(4096, stream);
        long a = ring.reserve(1024);
        stream.copies.add(new long[] {a, 1024});
        ring.queued();
        long b = ring.reserve(1024);
        stream.copies.add(new long[] {b, 1024});
        ring.queued();
        long c = ring.reserve(1500);  // 2048..3548: free
        stream.copies.add(new long[] {c, 1500});
        ring.queued();
        assertThat(stream.waits).isZero();
        // 1000 bytes do not fit after 3584 (aligned): the range starts over at 0 and must wait for copy a only
        long d = ring.reserve(1000);
        assertThat(d).isZero();
        assertThat(stream.waits).isEqualTo(1);
        assertThat(stream.completed).isEqualTo(1);
        assertThat(stream.overlapsQueued(d, 1000)).isFalse();
        stream.copies.add(new long[] {d, 1000});
        ring.queued();
    }

    @Test
    void completedRangesAreRetiredWithoutWaiting() {
        var stream = new ModelStream();
        var ring = new StagingRing<>(8192, stream);
        for (int i = 0; i < 50; i++) {
            long at = ring.reserve(700);
            stream.copies.add(new long[] {at, 700});
            ring.queued();
            stream.runUpTo(stream.copies.size());  // the device keeps up
        }
        assertThat(stream.waits).isZero();
        assertThat(ring.pendingRanges()).isLessThanOrEqualTo(1);
        assertThat(stream.recycled).isGreaterThanOrEqualTo(49);
    }

    @Test
    void randomCopiesNeverOverwriteBytesAQueuedCopyReads() {
        long seed = System.nanoTime();
        var rnd = new Random(seed);
        var stream = new ModelStream();
        var ring = new StagingRing<>(64 * 1024, stream);
        for (int i = 0; i < 5000; i++) {
            long bytes = 1 + rnd.nextInt(rnd.nextInt(10) == 0 ? 64 * 1024 : 6000);
            long at = ring.reserve(bytes);
            assertThat(at + bytes).as("seed %d", seed).isLessThanOrEqualTo(ring.capacity());
            assertThat(stream.overlapsQueued(at, bytes)).as("copy %d of %d bytes at %d, seed %d", i, bytes, at, seed).isFalse();
            stream.copies.add(new long[] {at, bytes});
            ring.queued();
            if (rnd.nextInt(8) == 0) stream.runUpTo(stream.completed + rnd.nextInt(4));  // the device lags behind
            if (rnd.nextInt(500) == 0) {
                stream.runUpTo(stream.copies.size());  // a synchronize
                ring.drained();
                assertThat(ring.pendingRanges()).isZero();
            }
        }
    }

    @Test
    void misuseIsRejected() {
        var ring = new StagingRing<>(4096, new ModelStream());
        assertThatThrownBy(() -> ring.reserve(4097)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("4097");
        assertThatThrownBy(() -> ring.reserve(0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(ring::queued).isInstanceOf(IllegalStateException.class).hasMessageContaining("no range reserved");
        ring.reserve(10);
        assertThatThrownBy(() -> ring.reserve(10)).isInstanceOf(IllegalStateException.class).hasMessageContaining("not fenced");
        assertThatThrownBy(() -> new StagingRing<>(1000, new ModelStream())).isInstanceOf(IllegalArgumentException.class);
    }
}
