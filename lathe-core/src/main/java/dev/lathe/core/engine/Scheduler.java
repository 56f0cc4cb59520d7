package dev.lathe.core.engine;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Decides what each step computes. Owned by one thread (the engine's); not thread-safe.
 *
 * <p>The model: a sequence is two counters, {@code numComputed} (tokens whose KV is in its blocks) and
 * {@code numTokens} (prompt + output). There is no prefill phase. Each step has a budget of
 * {@code maxNumBatchedTokens}; every scheduled sequence gets {@code min(numTokens - numComputed, budget
 * left)} tokens. A decode is the case where the difference is 1; a long prompt is split into chunks
 * across steps and shares each step with the decodes; a prefix-cache hit or a fork just starts
 * {@code numComputed} higher; a preempted sequence restarts at 0 and recomputes its prompt and output.
 *
 * <p>Order: running sequences first, oldest first (first come, first served), then waiting ones,
 * oldest first, while budget, sequence slots ({@code maxNumSeqs}) and blocks last. When a running
 * sequence cannot get the blocks it needs, the youngest running sequence is preempted (its blocks freed,
 * it goes back to the front of the waiting queue), repeatedly, down to the sequence itself. No waiting
 * sequence is admitted in a step that preempted. With {@link SchedulerConfig#guaranteeNoEvict} a waiting
 * sequence is admitted only while the blocks of every running sequence's prompt + max tokens and its own fit
 * in the pool, so running sequences never run out (unless one outgrows its max tokens); the first sequence is
 * always admitted when it fits now. Without no-evict, an {@link SchedulerConfig#admissionWatermark} admits a waiting
 * sequence only while the blocks its tokens so far need leave that share of the pool free (unless nothing runs),
 * so that the running sequences can grow for a while before anyone is preempted.
 *
 * <p>{@code n > 1}: a request enters as its first sample, holding {@code n} slots; when its prompt is
 * computed the caller samples {@code n} first tokens and {@link #fork}s the others, which share the full
 * prompt blocks and recompute only the partial last one.
 */
public final class Scheduler {
    private static final class Seq {
        final long id;
        final long arrival;
        final String salt;
        final int numPrompt;
        final int maxLen;  // prompt + max tokens: what a no-evict admission reserves
        int[] tokens;
        int numTokens;
        int numComputed;
        int pendingForks; // siblings to fork when the prompt is computed; their slots are held
        boolean knownToRunner;

        Seq(long id, long arrival, String salt, int[] prompt, int capacity) {
            this.id = id;
            this.arrival = arrival;
            this.salt = salt;
            this.numPrompt = prompt.length;
            this.maxLen = Math.max(capacity, prompt.length + 1);
            this.tokens = Arrays.copyOf(prompt, maxLen);
            this.numTokens = prompt.length;
        }

        int slots() { return 1 + pendingForks; }
    }

    private final SchedulerConfig config;
    private final KvCacheManager kv;
    private final Map<Long, Seq> seqs = new HashMap<>();
    private final ArrayDeque<Seq> waiting = new ArrayDeque<>();
    private final List<Seq> running = new ArrayList<>(); // oldest first
    private long nextArrival;
    private long preemptions;
    /** Blocks an admission beside running sequences must leave free; none under no-evict, which reserves their growth. */
    private final int watermark;

    public Scheduler(SchedulerConfig config, KvCacheManager kv) {
        this.config = config;
        this.kv = kv;
        this.watermark = config.guaranteeNoEvict() ? 0 : (int) (config.admissionWatermark() * kv.numBlocks());
    }

    public KvCacheManager kvCache() { return kv; }

    /**
     * Queues a sequence. {@code numSamples} > 1 holds slots for siblings forked from it later.
     * {@code maxTokens} sizes its token array once (it may grow beyond).
     */
    public void add(long seqId, int[] prompt, String salt, int numSamples, int maxTokens) {
        if (seqs.containsKey(seqId)) throw new IllegalArgumentException("sequence " + seqId + " is already scheduled");
        if (numSamples > config.maxNumSeqs()) {
            throw new IllegalArgumentException("n = " + numSamples + " samples exceed maxNumSeqs = " + config.maxNumSeqs());
        }
        var s = new Seq(seqId, nextArrival++, salt, prompt, prompt.length + maxTokens);
        s.pendingForks = numSamples - 1;
        seqs.put(seqId, s);
        waiting.addLast(s);
    }

    /** Computes the next step's work; see the class note. Empty when there is nothing to do. */
    public SchedulerOutput schedule() {
        int budget = config.maxNumBatchedTokens();
        var news = new ArrayList<SchedulerOutput.NewSequence>();
        var diffs = new ArrayList<SchedulerOutput.RunningSequence>();
        var preempted = new ArrayList<Long>();
        int total = 0;

        for (int i = 0; i < running.size() && budget > 0; i++) {
            Seq s = running.get(i);
            int n = Math.min(s.numTokens - s.numComputed, budget);
            if (n == 0) continue;
            KvCacheManager.Allocation a;
            while ((a = kv.allocate(s.id, KvCacheManager.CachedPrefix.NONE, s.numComputed, n, s.salt)) == null) {
                Seq victim = running.removeLast();
                preempt(victim);
                preempted.add(victim.id);
                if (victim == s) break;
            }
            if (a == null) break;
            if (s.knownToRunner) {
                diffs.add(new SchedulerOutput.RunningSequence(s.id, a.newBlocks(), n));
            } else {
                news.add(newSequence(s, n));
            }
            budget -= n;
            total += n;
        }

        int slots = 0;
        long reserved = 0;  // blocks the running sequences may come to hold (no-evict admission only)
        for (Seq s : running) {
            slots += s.slots();
            if (config.guaranteeNoEvict()) reserved += reservation(s);
        }
        while (preempted.isEmpty() && budget > 0 && !waiting.isEmpty()) {
            Seq s = waiting.peekFirst();
            if (slots + s.slots() > config.maxNumSeqs()) break;
            if (config.guaranteeNoEvict() && reserved + reservation(s) > kv.numBlocks() && !running.isEmpty()) break;
            var prefix = kv.findCachedPrefix(s.tokens, s.numTokens, s.salt);
            if (watermark > 0 && !running.isEmpty() && kv.numFreeBlocks() - kv.blocksToAdmit(prefix, s.numTokens) < watermark) break;
            int n = Math.min(s.numTokens - prefix.numTokens(), budget);
            if (kv.allocate(s.id, prefix, prefix.numTokens(), n, s.salt) == null) break;
            waiting.pollFirst();
            kv.recordLookup(s.numTokens, prefix.numTokens());
            s.numComputed = prefix.numTokens();
            running.add(s);
            slots += s.slots();
            if (config.guaranteeNoEvict()) reserved += reservation(s);
            news.add(newSequence(s, n));
            budget -= n;
            total += n;
        }
        return new SchedulerOutput(news, diffs, preempted, total);
    }

    /** The blocks a sequence (and the siblings it holds slots for) may come to hold: prompt + max tokens each. */
    private long reservation(Seq s) {
        return (long) s.slots() * ((s.maxLen + kv.blockSize() - 1) / kv.blockSize());
    }

    private SchedulerOutput.NewSequence newSequence(Seq s, int n) {
        s.knownToRunner = true;
        return new SchedulerOutput.NewSequence(s.id, Arrays.copyOf(s.tokens, s.numTokens), kv.blocks(s.id),
                s.numComputed, n);
    }

    private void preempt(Seq s) {
        kv.free(s.id);
        s.numComputed = 0;
        s.knownToRunner = false;
        waiting.addFirst(s); // the youngest goes first, so older ones end up ahead of it
        preemptions++;
    }

    /**
     * Records that the step ran: advances each scheduled sequence's computed count and caches the blocks
     * it filled. Returns the sequences whose tokens are now all computed, in step order: each needs its
     * next token sampled ({@link #appendToken}) or must be {@link #finish}ed.
     */
    public List<Long> update(SchedulerOutput out) {
        var ready = new ArrayList<Long>();
        for (var ns : out.newSequences()) advance(ns.seqId(), ns.numScheduled(), ready);
        for (var rs : out.running()) advance(rs.seqId(), rs.numScheduled(), ready);
        return ready;
    }

    private void advance(long seqId, int n, List<Long> ready) {
        Seq s = seqs.get(seqId);
        if (s == null || !kv.hasBlocks(seqId)) return; // finished or aborted since the step was scheduled
        s.numComputed += n;
        kv.cacheFullBlocks(seqId, s.tokens, s.numComputed);
        if (s.numComputed == s.numTokens) ready.add(seqId);
    }

    public void appendToken(long seqId, int token) {
        Seq s = seq(seqId);
        if (s.numTokens == s.tokens.length) s.tokens = Arrays.copyOf(s.tokens, s.tokens.length * 2);
        s.tokens[s.numTokens++] = token;
    }

    /**
     * Sets token {@code i} of a sequence, an output token appended as a placeholder before its value was known.
     * Blocks are hashed for the prefix cache only in {@link #update}, so the real value must be in place before the
     * update of the step that computes position {@code i}.
     */
    public void setToken(long seqId, int i, int token) {
        Seq s = seq(seqId);
        if (i < s.numPrompt || i >= s.numTokens) {
            throw new IllegalArgumentException("sequence " + seqId + ": token " + i + " is not an output token (prompt "
                    + s.numPrompt + ", tokens " + s.numTokens + ")");
        }
        s.tokens[i] = token;
    }

    /**
     * Starts sample {@code childId} of {@code parentId}'s request: the parent's prompt plus
     * {@code firstToken}, sharing the parent's full prompt blocks. The parent's prompt must be computed.
     */
    public void fork(long parentId, long childId, int firstToken) {
        Seq p = seq(parentId);
        if (p.pendingForks == 0) throw new IllegalStateException("sequence " + parentId + " has no sibling left to fork");
        if (p.numComputed < p.numPrompt) {
            throw new IllegalStateException("sequence " + parentId + " has computed " + p.numComputed + " of "
                    + p.numPrompt + " prompt tokens; fork after the prompt");
        }
        if (seqs.containsKey(childId)) throw new IllegalArgumentException("sequence " + childId + " is already scheduled");
        var c = new Seq(childId, p.arrival, p.salt, Arrays.copyOf(p.tokens, p.numPrompt), p.tokens.length);
        int shared = p.numPrompt / kv.blockSize();
        kv.fork(parentId, childId, shared);
        c.numComputed = shared * kv.blockSize();
        c.tokens[c.numTokens++] = firstToken;
        p.pendingForks--;
        seqs.put(childId, c);
        running.add(running.indexOf(p) + 1, c);
    }

    /** Ends a sequence wherever it is (finished, aborted): its blocks are freed at once. Idempotent. */
    public void finish(long seqId) {
        Seq s = seqs.remove(seqId);
        if (s == null) return;
        kv.free(seqId);
        if (!running.remove(s)) waiting.remove(s);
    }

    /** Sibling slots the sequence still holds for samples not yet forked. */
    public int pendingForks(long seqId) { return seq(seqId).pendingForks; }

    public int numComputed(long seqId) { return seq(seqId).numComputed; }

    public int numTokens(long seqId) { return seq(seqId).numTokens; }

    public int numPromptTokens(long seqId) { return seq(seqId).numPrompt; }

    public boolean contains(long seqId) { return seqs.containsKey(seqId); }

    public boolean isRunning(long seqId) {
        Seq s = seqs.get(seqId);
        return s != null && running.contains(s);
    }

    public int numWaiting() { return waiting.size(); }

    public int numRunning() { return running.size(); }

    public boolean hasUnfinished() { return !seqs.isEmpty(); }

    public long preemptions() { return preemptions; }

    private Seq seq(long seqId) {
        Seq s = seqs.get(seqId);
        if (s == null) throw new IllegalArgumentException("no sequence " + seqId + " in the scheduler");
        return s;
    }
}
