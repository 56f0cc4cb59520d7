package dev.lathe.core.engine;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Drives a {@link Scheduler} with fabricated runner outputs: every sequence that is ready gets the
 * token {@code 1000 + its output count}, and ends after its target output length. {@code n > 1}
 * requests fork their siblings when the first sample's prompt is computed, as the engine does.
 */
final class SchedulerDriver {
    final Scheduler scheduler;
    final KvCacheManager kv;
    final BlockPool pool;
    final Map<Long, Integer> targets = new HashMap<>();
    final Map<Long, Integer> outputs = new HashMap<>();
    final Map<Long, long[]> siblings = new HashMap<>();
    final List<SchedulerOutput> history = new ArrayList<>();
    final List<Long> finished = new ArrayList<>();
    final java.util.Set<Long> live = new java.util.LinkedHashSet<>(); // in the scheduler
    java.util.function.Consumer<SchedulerOutput> afterSchedule = o -> { };

    SchedulerDriver(int numBlocks, int blockSize, boolean prefixCaching, int maxNumSeqs, int maxTokensPerStep) {
        this(numBlocks, blockSize, prefixCaching, new SchedulerConfig(maxNumSeqs, maxTokensPerStep));
    }

    SchedulerDriver(int numBlocks, int blockSize, boolean prefixCaching, SchedulerConfig config) {
        pool = new BlockPool(numBlocks, blockSize);
        kv = new KvCacheManager(pool, prefixCaching);
        scheduler = new Scheduler(config, kv);
    }

    void add(long id, int[] prompt, int outputLen) {
        add(id, prompt, outputLen, new long[0]);
    }

    /** A request of {@code 1 + siblingIds.length} samples. */
    void add(long id, int[] prompt, int outputLen, long[] siblingIds) {
        scheduler.add(id, prompt, null, 1 + siblingIds.length, outputLen);
        targets.put(id, outputLen);
        outputs.put(id, 0);
        siblings.put(id, siblingIds);
        live.add(id);
        for (long s : siblingIds) {
            targets.put(s, outputLen);
            outputs.put(s, 0);
        }
    }

    SchedulerOutput step() {
        var out = scheduler.schedule();
        history.add(out);
        afterSchedule.accept(out);
        for (long seq : scheduler.update(out)) {
            if (outputs.get(seq) == 0 && scheduler.pendingForks(seq) > 0) {
                for (long s : siblings.get(seq)) {
                    scheduler.fork(seq, s, 1000);
                    live.add(s);
                    produced(s);
                }
            }
            scheduler.appendToken(seq, 1000 + outputs.get(seq));
            produced(seq);
        }
        return out;
    }

    private void produced(long seq) {
        int n = outputs.merge(seq, 1, Integer::sum);
        if (n >= targets.get(seq)) {
            scheduler.finish(seq);
            finished.add(seq);
            live.remove(seq);
        }
    }

    void abort(long seq) {
        scheduler.finish(seq);
        finished.add(seq);
        live.remove(seq);
    }

    void runToEnd(int maxSteps) {
        for (int i = 0; i < maxSteps && scheduler.hasUnfinished(); i++) step();
        if (scheduler.hasUnfinished()) throw new AssertionError("not finished after " + maxSteps + " steps");
    }

    static int[] prompt(int start, int n) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = start + i;
        return p;
    }
}
