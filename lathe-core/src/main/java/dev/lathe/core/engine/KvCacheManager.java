package dev.lathe.core.engine;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Assigns KV blocks to sequences over a {@link BlockPool}, with prefix reuse. The scheduler talks to it
 * in sequence ids and token counts and gets value types back; it never sees reference counts or lists.
 *
 * <p>A sequence's blocks hold its tokens in order, {@code blockSize} per block. Block {@code i} is
 * <em>full</em> once the sequence has computed {@code (i + 1) * blockSize} tokens; with prefix caching on,
 * a full block is registered under {@code hash(parent block's hash, its tokens)}, the chain starting from
 * a hash of the request's cache salt. A new sequence whose leading full blocks are cached takes
 * references on them and skips computing those tokens. At least one token is always left to compute, so
 * that the step that finishes a prompt yields logits.
 *
 * <p>Sharing: a block may be referenced by several sequences (prefix hits, {@link #fork}); only full
 * blocks are shared, so no sequence ever writes into a block another one reads.
 */
public final class KvCacheManager {
    /** The cached leading blocks of a token sequence: their ids and hashes; {@code numTokens} = blocks x blockSize. */
    public record CachedPrefix(int[] blocks, long[] hashes, int numTokens) {
        static final CachedPrefix NONE = new CachedPrefix(new int[0], new long[0], 0);
    }

    /** The blocks given to one sequence by one {@link #allocate} call (for the runner's block table). */
    public record Allocation(int[] newBlocks) {}

    private static final class SeqBlocks {
        int[] blocks = new int[8];
        int numBlocks;
        long[] hashes = new long[8]; // hashes of the first numHashed blocks
        int numHashed;
        long seedHash;

        void add(int b) {
            if (numBlocks == blocks.length) blocks = Arrays.copyOf(blocks, numBlocks * 2);
            blocks[numBlocks++] = b;
        }

        void addHash(long h) {
            if (numHashed == hashes.length) hashes = Arrays.copyOf(hashes, numHashed * 2);
            hashes[numHashed++] = h;
        }
    }

    private final BlockPool pool;
    private final int blockSize;
    private final boolean prefixCaching;
    private final Map<Long, SeqBlocks> seqs = new HashMap<>();
    private long prefixQueries, prefixHits;

    public KvCacheManager(BlockPool pool, boolean prefixCaching) {
        this.pool = pool;
        this.blockSize = pool.blockSize();
        this.prefixCaching = prefixCaching;
    }

    public int blockSize() { return blockSize; }

    public int numBlocks() { return pool.numBlocks(); }

    public int numFreeBlocks() { return pool.numFree(); }

    public int numUsedBlocks() { return pool.numUsed(); }

    public long prefixQueries() { return prefixQueries; }

    public long prefixHits() { return prefixHits; }

    /** Blocks needed to hold {@code numTokens} tokens. */
    public int blocksFor(int numTokens) { return (numTokens + blockSize - 1) / blockSize; }

    /**
     * The longest run of cached full blocks at the start of {@code tokens[0, numTokens)}, leaving at least
     * one token uncached. Takes no references; pass the result to {@link #allocate} in the same step,
     * and {@link #recordLookup} once it is used.
     */
    public CachedPrefix findCachedPrefix(int[] tokens, int numTokens, String salt) {
        if (!prefixCaching) return CachedPrefix.NONE;
        int maxBlocks = (numTokens - 1) / blockSize;
        int[] blocks = new int[maxBlocks];
        long[] hashes = new long[maxBlocks];
        long parent = seedHash(salt);
        int n = 0;
        while (n < maxBlocks) {
            long h = blockHash(parent, tokens, n * blockSize, blockSize);
            int b = pool.lookup(h, parent, tokens, n * blockSize);
            if (b < 0) break;
            blocks[n] = b;
            hashes[n++] = h;
            parent = h;
        }
        return new CachedPrefix(Arrays.copyOf(blocks, n), Arrays.copyOf(hashes, n), n * blockSize);
    }

    /** Counts a lookup whose result was used: {@code queried} tokens looked up, {@code hit} of them cached. */
    public void recordLookup(int queried, int hit) {
        if (!prefixCaching) return;
        prefixQueries += queried;
        prefixHits += hit;
    }

    /**
     * Free blocks a new sequence of {@code numTokens} tokens takes once all of them have blocks: those past its
     * cached {@code prefix}, and the prefix blocks that sit unreferenced on the free list.
     */
    public int blocksToAdmit(CachedPrefix prefix, int numTokens) {
        return Math.max(0, blocksFor(numTokens) - prefix.blocks().length) + revived(prefix);
    }

    /** The prefix blocks that sit unreferenced on the free list: taking them takes them off it. */
    private int revived(CachedPrefix prefix) {
        int n = 0;
        for (int b : prefix.blocks()) if (pool.refCount(b) == 0) n++;
        return n;
    }

    /**
     * Gives sequence {@code seqId} blocks for {@code numComputed + numNewTokens} tokens: the cached prefix
     * first (only for a sequence without blocks), then fresh blocks. All or nothing: returns null and
     * changes nothing when the pool cannot supply them.
     */
    public Allocation allocate(long seqId, CachedPrefix prefix, int numComputed, int numNewTokens, String salt) {
        SeqBlocks s = seqs.get(seqId);
        if (s != null && prefix.blocks().length > 0) {
            throw new IllegalStateException("sequence " + seqId + " already has blocks; a cached prefix applies only to a new one");
        }
        int have = s == null ? prefix.blocks().length : s.numBlocks;
        int fresh = Math.max(0, blocksFor(numComputed + numNewTokens) - have);
        if (fresh + revived(prefix) > pool.numFree()) return null;
        if (s == null) {
            s = new SeqBlocks();
            s.seedHash = seedHash(salt);
            seqs.put(seqId, s);
            for (int i = 0; i < prefix.blocks().length; i++) {
                pool.incRef(prefix.blocks()[i]);
                s.add(prefix.blocks()[i]);
                s.addHash(prefix.hashes()[i]);
            }
        }
        int[] added = new int[fresh];
        for (int i = 0; i < fresh; i++) {
            added[i] = pool.allocate();
            s.add(added[i]);
        }
        return new Allocation(added);
    }

    /** The sequence's block ids, in token order. */
    public int[] blocks(long seqId) {
        SeqBlocks s = seqs.get(seqId);
        return s == null ? new int[0] : Arrays.copyOf(s.blocks, s.numBlocks);
    }

    /** Registers the blocks that {@code numComputed} computed tokens have filled, when prefix caching is on. */
    public void cacheFullBlocks(long seqId, int[] tokens, int numComputed) {
        if (!prefixCaching) return;
        SeqBlocks s = seqs.get(seqId);
        if (s == null) return;
        int full = Math.min(numComputed / blockSize, s.numBlocks);
        while (s.numHashed < full) {
            int i = s.numHashed;
            long parent = i == 0 ? s.seedHash : s.hashes[i - 1];
            long h = blockHash(parent, tokens, i * blockSize, blockSize);
            pool.register(s.blocks[i], h, parent, tokens, i * blockSize);
            s.addHash(h);
        }
    }

    /**
     * Starts sequence {@code childId} on the first {@code numFullBlocks} blocks of {@code parentId}, by
     * reference; the child must compute everything after them itself.
     */
    public void fork(long parentId, long childId, int numFullBlocks) {
        SeqBlocks p = seqs.get(parentId);
        if (p == null || p.numBlocks < numFullBlocks) {
            throw new IllegalStateException("sequence " + parentId + " has fewer than " + numFullBlocks + " blocks to share");
        }
        if (seqs.containsKey(childId)) throw new IllegalStateException("sequence " + childId + " already has blocks");
        var c = new SeqBlocks();
        c.seedHash = p.seedHash;
        for (int i = 0; i < numFullBlocks; i++) {
            pool.incRef(p.blocks[i]);
            c.add(p.blocks[i]);
            if (i < p.numHashed) c.addHash(p.hashes[i]);
        }
        seqs.put(childId, c);
    }

    /** Drops every reference of the sequence; the last block goes to the free list first (evicted first). */
    public void free(long seqId) {
        SeqBlocks s = seqs.remove(seqId);
        if (s == null) return;
        for (int i = s.numBlocks - 1; i >= 0; i--) pool.decRef(s.blocks[i]);
    }

    public boolean hasBlocks(long seqId) { return seqs.containsKey(seqId); }

    /** Sequences holding blocks. */
    public int numSequences() { return seqs.size(); }

    static long seedHash(String salt) {
        long h = mix(0x5bd1e995L);
        if (salt != null) {
            h = mix(h ^ salt.length());
            for (int i = 0; i < salt.length(); i++) h = mix(h ^ salt.charAt(i));
        }
        return h;
    }

    /** 64-bit hash of a parent hash and {@code len} token ids; never 0. */
    static long blockHash(long parent, int[] tokens, int from, int len) {
        long h = mix(parent);
        for (int i = 0; i < len; i++) h = mix(h ^ (tokens[from + i] & 0xFFFFFFFFL));
        return h == 0 ? 1 : h;
    }

    // splitmix64's finaliser
    private static long mix(long z) {
        z += 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
