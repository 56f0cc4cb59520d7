package dev.lathe.core.engine;

import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static dev.lathe.core.engine.SchedulerDriver.prompt;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The scheduler on fabricated runner outputs: no model, only token counts and blocks. */
class SchedulerTest {
    static int scheduled(SchedulerOutput out, long seq) {
        for (var n : out.newSequences()) if (n.seqId() == seq) return n.numScheduled();
        for (var r : out.running()) if (r.seqId() == seq) return r.numScheduled();
        return 0;
    }

    @Test
    void aLongPromptIsChunkedAndSharesStepsWithDecodes() {
        var d = new SchedulerDriver(64, 4, false, 8, 8);
        d.add(1, prompt(0, 3), 10);
        assertThat(scheduled(d.step(), 1)).isEqualTo(3);
        d.add(2, prompt(100, 20), 2);
        var out = d.step();
        assertThat(scheduled(out, 1)).as("the decode goes first").isEqualTo(1);
        assertThat(scheduled(out, 2)).as("the prompt takes the rest of the budget").isEqualTo(7);
        assertThat(out.totalTokens()).isEqualTo(8);
        out = d.step();
        assertThat(scheduled(out, 1)).isEqualTo(1);
        assertThat(scheduled(out, 2)).isEqualTo(7);
        out = d.step();
        assertThat(scheduled(out, 2)).as("the last chunk").isEqualTo(6);
        assertThat(d.scheduler.numComputed(2)).isEqualTo(20);
        assertThat(d.scheduler.numTokens(2)).as("its first token sampled once the prompt is done").isEqualTo(21);
    }

    @Test
    void sequenceCapKeepsTheRestWaitingInArrivalOrder() {
        var d = new SchedulerDriver(64, 4, false, 2, 100);
        for (long i = 1; i <= 4; i++) d.add(i, prompt((int) i * 10, 5), 3);
        var out = d.step();
        assertThat(out.newSequences()).extracting(SchedulerOutput.NewSequence::seqId).containsExactly(1L, 2L);
        assertThat(d.scheduler.numWaiting()).isEqualTo(2);
        d.step();
        out = d.step(); // 1 and 2 finish their third token here
        assertThat(d.finished).containsExactly(1L, 2L);
        out = d.step();
        assertThat(out.newSequences()).extracting(SchedulerOutput.NewSequence::seqId).containsExactly(3L, 4L);
    }

    @Test
    void aRepeatedPrefixSkipsItsFullBlocks() {
        var d = new SchedulerDriver(64, 4, true, 8, 100);
        d.add(1, prompt(0, 10), 1);
        var first = d.step();
        int[] blocksOfFirst = first.newSequences().getFirst().blocks();
        assertThat(d.finished).containsExactly(1L);
        int[] p2 = prompt(0, 10);
        p2[9] = 77; // same two full blocks, different tail
        d.add(2, p2, 1);
        var ns = d.step().newSequences().getFirst();
        assertThat(ns.numComputed()).isEqualTo(8);
        assertThat(ns.numScheduled()).isEqualTo(2);
        assertThat(Arrays.copyOf(ns.blocks(), 2)).containsExactly(blocksOfFirst[0], blocksOfFirst[1]);
        assertThat(d.kv.prefixHits()).isEqualTo(8);
    }

    @Test
    void aRequestWaitingForBlocksIsCountedInPrefixStatsOnceAdmitted() {
        var d = new SchedulerDriver(4, 4, true, 8, 100);
        d.add(1, prompt(0, 13), 3);   // holds all 4 blocks
        d.add(2, prompt(100, 5), 1);  // needs 2: waits
        d.step();
        d.step();
        assertThat(d.scheduler.numWaiting()).isEqualTo(1);
        assertThat(d.kv.prefixQueries()).isEqualTo(13);
        d.runToEnd(10);
        assertThat(d.kv.prefixQueries()).isEqualTo(18);
    }

    @Test
    void aFullyCachedPromptStillComputesItsLastToken() {
        var d = new SchedulerDriver(64, 4, true, 8, 100);
        d.add(1, prompt(0, 8), 1);
        d.step();
        d.add(2, prompt(0, 8), 1);
        var ns = d.step().newSequences().getFirst();
        assertThat(ns.numComputed()).as("one full block reused, the last one recomputed for its logits").isEqualTo(4);
        assertThat(ns.numScheduled()).isEqualTo(4);
    }

    @Test
    void prefixCacheIsSeparatedBySalt() {
        var d = new SchedulerDriver(64, 4, true, 8, 100);
        d.scheduler.add(1, prompt(0, 10), "tenant-a", 1, 1);
        d.targets.put(1L, 1);
        d.outputs.put(1L, 0);
        d.step();
        d.scheduler.add(2, prompt(0, 10), "tenant-b", 1, 1);
        d.targets.put(2L, 1);
        d.outputs.put(2L, 0);
        assertThat(d.step().newSequences().getFirst().numComputed()).isZero();
    }

    @Test
    void evictionDropsTheLeastRecentlyFreedCachedBlocksFirst() {
        var d = new SchedulerDriver(6, 4, true, 8, 100);
        d.add(1, prompt(0, 9), 1);   // 3 blocks: 2 full and cached, 1 for the tail and the output
        d.step();
        d.add(2, prompt(50, 9), 1);  // 3 more blocks, all free ones; nothing of 1's is evicted
        d.step();
        assertThat(d.pool.numCached()).isEqualTo(4);
        d.add(3, prompt(100, 5), 1);  // needs 2 blocks: takes 1's freed tail, then 1's last cached block
        d.step();
        // one of 1's evicted, 3's own first block cached
        assertThat(d.pool.numCached()).isEqualTo(4);
        d.add(4, prompt(0, 9), 1);
        var ns = d.step().newSequences().getFirst();
        assertThat(ns.numComputed()).as("1's first block survived; its second was evicted").isEqualTo(4);
    }

    @Test
    void whenBlocksRunOutTheYoungestIsPreemptedAndResumesWithItsOutput() {
        var d = new SchedulerDriver(4, 4, false, 8, 100);
        d.add(1, prompt(0, 4), 6);
        d.add(2, prompt(10, 4), 6);
        d.step(); // each holds 1 full block, 4 tokens computed, 1 sampled
        d.step(); // each needs a 2nd block for its 5th token: 4 in use
        d.step();
        d.step();
        d.step();
        assertThat(d.pool.numFree()).isZero();
        var out = d.step(); // 1's 9th token needs a 3rd block: 2 is preempted
        assertThat(out.preempted()).containsExactly(2L);
        assertThat(scheduled(out, 1)).isEqualTo(1);
        assertThat(d.scheduler.isRunning(2)).isFalse();
        assertThat(d.scheduler.numComputed(2)).isZero();
        int tokensOf2 = d.scheduler.numTokens(2);
        d.runToEnd(50);
        var resumed = d.history.stream().flatMap(o -> o.newSequences().stream()).filter(n -> n.seqId() == 2).toList();
        assertThat(resumed).hasSize(2);
        assertThat(resumed.get(1).tokens()).as("recomputed with the output it had").hasSize(tokensOf2);
        assertThat(d.outputs.get(2L)).isEqualTo(6);
        assertThat(d.pool.numUsed()).isZero();
    }

    @Test
    void aSequenceThatCannotGrowPreemptsItselfWhenItIsTheYoungest() {
        var d = new SchedulerDriver(3, 4, false, 8, 100);
        d.add(1, prompt(0, 8), 4);  // 2 blocks, then a 3rd for its 9th token
        d.add(2, prompt(10, 3), 4); // 1 block
        d.step();
        var out = d.step();
        assertThat(out.preempted()).containsExactly(2L);
        d.runToEnd(50);
        assertThat(d.outputs.get(1L)).isEqualTo(4);
        assertThat(d.outputs.get(2L)).isEqualTo(4);
    }

    @Test
    void abortMidPrefillFreesEveryBlockAtOnce() {
        var d = new SchedulerDriver(64, 4, true, 8, 8);
        d.add(1, prompt(0, 40), 3);
        d.step();
        assertThat(d.scheduler.numComputed(1)).isEqualTo(8);
        assertThat(d.pool.numUsed()).isEqualTo(2);
        d.abort(1);
        assertThat(d.pool.numUsed()).isZero();
        assertThat(d.scheduler.hasUnfinished()).isFalse();
        assertThat(d.step().isEmpty()).isTrue();
    }

    @Test
    void abortMidDecodeFreesEveryBlockAndTheOthersGoOn() {
        var d = new SchedulerDriver(64, 4, false, 8, 100);
        d.add(1, prompt(0, 6), 10);
        d.add(2, prompt(20, 6), 3);
        d.step();
        d.step();
        d.abort(1);
        assertThat(d.kv.hasBlocks(1)).isFalse();
        d.runToEnd(10);
        assertThat(d.outputs.get(2L)).isEqualTo(3);
        assertThat(d.pool.numUsed()).isZero();
    }

    @Test
    void abortWhileWaitingNeverSchedules() {
        var d = new SchedulerDriver(64, 4, false, 1, 100);
        d.add(1, prompt(0, 6), 3);
        d.add(2, prompt(20, 6), 3);
        d.step();
        d.abort(2);
        d.runToEnd(10);
        assertThat(d.history).allSatisfy(o -> assertThat(scheduled(o, 2)).isZero());
    }

    @Test
    void samplesShareTheFullPromptBlocksAndRecomputeThePartialOne() {
        var d = new SchedulerDriver(64, 4, false, 3, 100);
        d.add(1, prompt(0, 10), 4, new long[]{2, 3}); // 2 full blocks + 2 tokens
        d.add(9, prompt(50, 3), 2);
        var first = d.step();
        assertThat(first.newSequences()).extracting(SchedulerOutput.NewSequence::seqId)
                .as("the request holds 3 slots of 3").containsExactly(1L);
        int[] lead = d.kv.blocks(1);
        var second = d.step();
        var children = second.newSequences().stream().filter(n -> n.seqId() == 2 || n.seqId() == 3).toList();
        assertThat(children).hasSize(2);
        for (var c : children) {
            assertThat(c.numComputed()).isEqualTo(8);
            assertThat(c.numScheduled()).as("the 2 tail prompt tokens and the first sampled one").isEqualTo(3);
            assertThat(Arrays.copyOf(c.blocks(), 2)).containsExactly(lead[0], lead[1]);
            assertThat(c.blocks()[2]).isNotEqualTo(lead[2]);
        }
        assertThat(d.pool.refCount(lead[0])).isEqualTo(3);
        assertThat(d.pool.refCount(lead[2])).isEqualTo(1);
        d.runToEnd(20);
        assertThat(d.outputs).containsEntry(1L, 4).containsEntry(2L, 4).containsEntry(3L, 4).containsEntry(9L, 2);
        assertThat(d.pool.numUsed()).isZero();
    }

    @Test
    void theBudgetIsNeverExceeded() {
        var d = new SchedulerDriver(256, 4, true, 16, 13);
        for (long i = 0; i < 20; i++) d.add(i, prompt((int) i * 3, 5 + (int) i * 2), 5);
        d.runToEnd(500);
        assertThat(d.history).allSatisfy(o -> assertThat(o.totalTokens()).isBetween(1, 13));
        assertThat(d.history).allSatisfy(o -> assertThat(o.numSequences()).isLessThanOrEqualTo(16));
    }

    /**
     * 10 requests of 8 prompt + 16 output tokens (6 blocks of 4 each, whole) in 40 blocks: admitting what fits now
     * lets more in than can finish together and preempts; no-evict admission keeps at most 6 running at once
     * (36 of 40 blocks reserved), never preempts, and every request still ends with its 16 tokens.
     */
    @Test
    void noEvictAdmissionReservesEachRequestsWholeLengthAndNeverPreempts() {
        for (boolean noEvict : new boolean[]{false, true}) {
            var d = new SchedulerDriver(40, 4, false, new SchedulerConfig(64, 256, noEvict));
            for (int i = 0; i < 10; i++) d.add(i, SchedulerDriver.prompt(100 * i, 8), 16);
            int peak = 0;
            for (int step = 0; step < 400 && d.scheduler.hasUnfinished(); step++) {
                d.step();
                peak = Math.max(peak, d.scheduler.numRunning());
            }
            assertThat(d.scheduler.hasUnfinished()).as("no-evict %s: all done", noEvict).isFalse();
            assertThat(d.outputs.values()).as("no-evict %s: outputs", noEvict).allMatch(n -> n == 16);
            if (noEvict) {
                assertThat(d.scheduler.preemptions()).as("preemptions").isZero();
                assertThat(peak).as("running at once").isEqualTo(6);
            } else {
                assertThat(d.scheduler.preemptions()).as("preemptions when admitting what fits now").isPositive();
                assertThat(peak).as("running at once").isGreaterThan(6);
            }
            assertThat(d.pool.numFree()).as("blocks back in the pool").isEqualTo(40);
        }
    }

    /** FCFS under no-evict: a request that cannot be reserved waits at the head, and later ones wait behind it. */
    @Test
    void noEvictKeepsTheQueueInOrder() {
        var d = new SchedulerDriver(10, 4, false, new SchedulerConfig(8, 64, true));
        d.add(1, SchedulerDriver.prompt(0, 4), 30);   // 34 tokens: 9 of the 10 blocks reserved
        d.add(2, SchedulerDriver.prompt(50, 4), 2);   // 2 blocks: 11 > 10, waits
        d.add(3, SchedulerDriver.prompt(90, 2), 1);   // would fit alone in what is left, but 2 is ahead of it
        d.step();
        assertThat(d.scheduler.isRunning(1)).isTrue();
        assertThat(d.scheduler.isRunning(2)).as("2 waits: 9 + 2 blocks reserved > 10").isFalse();
        assertThat(d.scheduler.isRunning(3)).as("3 stays behind 2").isFalse();
        while (d.scheduler.isRunning(1)) {
            assertThat(d.scheduler.isRunning(2) || d.scheduler.isRunning(3)).as("nothing joins 1 while it runs").isFalse();
            d.step();
        }
        d.runToEnd(100);
        assertThat(d.scheduler.preemptions()).isZero();
        assertThat(d.finished).containsExactlyInAnyOrder(1L, 2L, 3L);
        assertThat(d.finished.getFirst()).isEqualTo(1L);
    }

    /**
     * A 10% watermark of 40 blocks keeps 4 free when admitting beside a running request: with 20 blocks held by the
     * first, a second of 18 blocks (20 + 18 = 38: 2 left, under the 4) waits, one of 16 (4 left) is admitted. Without the
     * watermark the 18-block one is admitted at once.
     */
    @Test
    void theAdmissionWatermarkKeepsItsShareOfTheBlocksFreeBesideRunningRequests() {
        for (int second : new int[]{72, 64}) {  // 18 or 16 blocks of 4
            for (double watermark : new double[]{0.1, 0}) {
                var d = new SchedulerDriver(40, 4, false, new SchedulerConfig(8, 512, false, watermark));
                d.add(1, SchedulerDriver.prompt(0, 79), 40);   // 20 blocks, also with its first output token
                d.step();
                assertThat(d.pool.numFree()).isEqualTo(20);
                d.add(2, SchedulerDriver.prompt(500, second), 1);
                d.step();
                boolean admitted = d.scheduler.isRunning(2) || d.finished.contains(2L);
                boolean expected = watermark == 0 || second == 64;
                assertThat(admitted).as("%d-token request beside 20 held blocks, watermark %s", second, watermark)
                        .isEqualTo(expected);
            }
        }
    }

    /** Nothing running: the watermark does not hold back a request that fits (else a large one could never start). */
    @Test
    void theAdmissionWatermarkNeverHoldsBackTheOnlyRequest() {
        var d = new SchedulerDriver(40, 4, false, new SchedulerConfig(8, 512, false, 0.5));
        d.add(1, SchedulerDriver.prompt(0, 150), 2);  // 38 of 40 blocks
        d.step();
        assertThat(d.scheduler.isRunning(1)).isTrue();
        d.runToEnd(100);
        assertThat(d.finished).containsExactly(1L);
        assertThat(d.pool.numFree()).isEqualTo(40);
    }

    /**
     * A stream under KV pressure: 40 requests of 16 prompt + 32 output tokens (12 blocks of 4 each, whole) through 100
     * blocks, 64 tokens a step, so that requests finish and others take their blocks while the rest grow. With a 10%
     * watermark every request still ends with its 32 tokens and every block comes back, and fewer requests are
     * preempted than when admissions may take the last free block.
     */
    @Test
    void theAdmissionWatermarkPreemptsLessAndLosesNothing() {
        long[] preemptions = new long[2];
        double[] watermarks = {0, 0.1};
        for (int w = 0; w < 2; w++) {
            var d = new SchedulerDriver(100, 4, false, new SchedulerConfig(64, 64, false, watermarks[w]));
            for (int i = 0; i < 40; i++) d.add(i, SchedulerDriver.prompt(100 * i, 16), 32);
            d.runToEnd(2000);
            assertThat(d.outputs.values()).as("watermark %s: outputs", watermarks[w]).hasSize(40).allMatch(n -> n == 32);
            assertThat(d.pool.numFree()).as("blocks back in the pool").isEqualTo(100);
            preemptions[w] = d.scheduler.preemptions();
        }
        assertThat(preemptions[0]).as("preemptions without the watermark").isPositive();
        assertThat(preemptions[1]).as("preemptions with the watermark (without: %d)", preemptions[0]).isLessThan(preemptions[0]);
    }

    /** Under no-evict the watermark is not applied: the reservations of whole lengths already leave room to grow. */
    @Test
    void noEvictAdmissionIgnoresTheWatermark() {
        var d = new SchedulerDriver(40, 4, false, new SchedulerConfig(8, 512, true, 0.5));
        d.add(1, SchedulerDriver.prompt(0, 8), 8);    // 4 blocks reserved, 2 taken
        d.add(2, SchedulerDriver.prompt(100, 80), 4); // 21 reserved (25 of 40), 20 taken: 18 left, under the watermark's 20
        d.step();
        assertThat(d.scheduler.isRunning(1) && d.scheduler.isRunning(2))
                .as("both admitted although the second leaves less than half the pool free").isTrue();
    }

    @Test
    void anAdmissionWatermarkOutsideZeroToOneIsRefused() {
        assertThatThrownBy(() -> new SchedulerConfig(8, 64, false, 1.0)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("admissionWatermark");
        assertThatThrownBy(() -> new SchedulerConfig(8, 64, false, -0.1)).isInstanceOf(IllegalArgumentException.class);
    }
}
