package dev.lathe.core.engine;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Random request streams against the scheduler and KV manager: arrivals (often sharing prefixes, some
 * with several samples), steps and aborts in any order, on pools from tight to roomy.
 */
class SchedulerProperties {
    sealed interface Op permits Add, Step, Abort {}

    record Add(int group, int promptLen, int outputLen, int n) implements Op {}

    record Step() implements Op {}

    record Abort(int pick) implements Op {}

    @Provide
    Arbitrary<List<Op>> streams() {
        Arbitrary<Op> add = Combinators.combine(Arbitraries.integers().between(0, 3), Arbitraries.integers().between(1, 30),
                Arbitraries.integers().between(1, 12), Arbitraries.integers().between(1, 3)).as(Add::new);
        Arbitrary<Op> step = Arbitraries.just(new Step());
        Arbitrary<Op> abort = Arbitraries.integers().between(0, 1000).map(Abort::new);
        return Arbitraries.frequencyOf(
                net.jqwik.api.Tuple.of(3, add), net.jqwik.api.Tuple.of(6, step), net.jqwik.api.Tuple.of(1, abort))
                .list().ofMinSize(1).ofMaxSize(60);
    }

    @Property(tries = 300)
    void blocksAreNeverLeakedSharedWronglyOrOverReleased(@ForAll("streams") List<Op> ops,
                                                         @ForAll @IntRange(min = 1, max = 6) int blockSize,
                                                         @ForAll @IntRange(min = 12, max = 40) int numBlocks,
                                                         @ForAll @IntRange(min = 3, max = 6) int maxNumSeqs,
                                                         @ForAll @IntRange(min = 1, max = 24) int budget,
                                                         @ForAll boolean prefixCaching,
                                                         @ForAll boolean noEvict,
                                                         @ForAll @IntRange(min = 0, max = 3) int watermarkTenths) {
        var d = new SchedulerDriver(numBlocks, blockSize, prefixCaching,
                new SchedulerConfig(maxNumSeqs, budget, noEvict, watermarkTenths / 10.0));
        boolean everyRequestFitsAlone = true;  // its samples' whole lengths within the pool: no-evict then never preempts
        d.afterSchedule = out -> freshBlocksAreUnshared(d, out);
        int capacity = numBlocks * blockSize;
        long nextId = 0;
        for (Op op : ops) {
            switch (op) {
                case Add a -> {
                    // a prompt of the group's shared tokens, then the request's own; the whole sequence fits the pool
                    int len = Math.min(a.promptLen(), capacity / 2);
                    int out = Math.min(a.outputLen(), capacity - len);
                    int[] prompt = new int[len];
                    for (int i = 0; i < len; i++) prompt[i] = i < len * 2 / 3 ? a.group() * 100 + i : (int) (nextId * 1000 + i);
                    long id = nextId++;
                    long[] sibs = new long[a.n() - 1];
                    for (int i = 0; i < sibs.length; i++) sibs[i] = 1_000_000 + id * 10 + i;
                    d.add(id, prompt, out, sibs);
                    everyRequestFitsAlone &= (long) a.n() * ((len + Math.max(out, 1) + blockSize - 1) / blockSize) <= numBlocks;
                }
                case Step s -> {
                    if (d.scheduler.hasUnfinished()) d.step();
                }
                case Abort ab -> {
                    if (!d.live.isEmpty()) d.abort(new ArrayList<>(d.live).get(ab.pick() % d.live.size()));
                }
            }
            referenceCountsMatchTheSequences(d);
        }
        d.runToEnd(10_000);
        net.jqwik.api.statistics.Statistics.label("preempted").collect(d.scheduler.preemptions() > 0);
        if (noEvict && everyRequestFitsAlone) assertThat(d.scheduler.preemptions()).as("preemptions under no-evict").isZero();
        net.jqwik.api.statistics.Statistics.label("prefix hit").collect(d.kv.prefixHits() > 0);
        referenceCountsMatchTheSequences(d);
        assertThat(d.pool.numUsed()).as("blocks still referenced after every request ended").isZero();
        assertThat(d.pool.numFree()).isEqualTo(numBlocks);
        assertThat(d.kv.numSequences()).isZero();
    }

    /** Every block's reference count is the number of live sequences holding it, never negative. */
    static void referenceCountsMatchTheSequences(SchedulerDriver d) {
        var holders = new HashMap<Integer, Integer>();
        for (long seq : d.live) for (int b : d.kv.blocks(seq)) holders.merge(b, 1, Integer::sum);
        int free = 0;
        for (int b = 0; b < d.pool.numBlocks(); b++) {
            assertThat(d.pool.refCount(b)).as("reference count of block %d", b).isEqualTo(holders.getOrDefault(b, 0));
            if (d.pool.refCount(b) == 0) free++;
        }
        assertThat(d.pool.numFree()).isEqualTo(free);
    }

    /** A block handed out for new tokens is held by that sequence alone: a cached block in use is never reused. */
    static void freshBlocksAreUnshared(SchedulerDriver d, SchedulerOutput out) {
        for (var r : out.running()) {
            for (int b : r.newBlocks()) assertThat(d.pool.refCount(b)).as("fresh block %d", b).isEqualTo(1);
        }
        for (var n : out.newSequences()) {
            int shared = n.numComputed() / d.kv.blockSize();
            for (int i = shared; i < n.blocks().length; i++) {
                assertThat(d.pool.refCount(n.blocks()[i])).as("fresh block %d of %d", n.blocks()[i], n.seqId()).isEqualTo(1);
            }
        }
    }
}
