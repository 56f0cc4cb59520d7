package dev.lathe.core.engine;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * The KV blocks of one cache: reference counts, the free list and the prefix-cache index.
 *
 * <p>Invariants:
 * <ul>
 *   <li>a block is on the free list exactly when its reference count is 0;</li>
 *   <li>the free list is ordered least recently freed first: {@link #allocate} takes its head, a freed
 *       block goes to its tail, so cached blocks that were used last are evicted last;</li>
 *   <li>a block with a hash is in {@code byHash} under that hash; {@link #allocate} drops the hash of the
 *       block it hands out (eviction), so a block is never both in use for new tokens and findable;</li>
 *   <li>a cached block found by {@link #lookup} may have reference count 0 (on the free list); taking a
 *       reference ({@link #incRef}) unlinks it from the list in O(1).</li>
 * </ul>
 *
 * <p>The free list is intrusive and doubly linked over two int arrays; index {@code numBlocks} is the
 * sentinel. A hash names a block by its parent block's hash and its own token ids; to make a 64-bit
 * hash collision harmless, {@link #lookup} also compares the parent hash and the tokens kept per block.
 */
public final class BlockPool {
    private static final long NO_HASH = 0;

    private final int numBlocks;
    private final int blockSize;
    private final int[] refCount;
    private final int[] prev, next;    // free list links; [numBlocks] is the sentinel
    private final long[] hash;          // NO_HASH when the block is not in the prefix cache
    private final long[] parentHash;
    private final int[] tokens;         // [numBlocks, blockSize]: the token ids of cached blocks
    private final Map<Long, Integer> byHash = new HashMap<>();
    private int numFree;

    public BlockPool(int numBlocks, int blockSize) {
        if (numBlocks < 1 || blockSize < 1) {
            throw new IllegalArgumentException("a block pool needs numBlocks >= 1 and blockSize >= 1, got "
                    + numBlocks + " and " + blockSize);
        }
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        refCount = new int[numBlocks];
        prev = new int[numBlocks + 1];
        next = new int[numBlocks + 1];
        hash = new long[numBlocks];
        parentHash = new long[numBlocks];
        tokens = new int[numBlocks * blockSize];
        prev[numBlocks] = next[numBlocks] = numBlocks;
        for (int b = 0; b < numBlocks; b++) linkTail(b);
    }

    public int numBlocks() { return numBlocks; }

    public int blockSize() { return blockSize; }

    /** Blocks with no reference (cached or not): what {@link #allocate} can hand out. */
    public int numFree() { return numFree; }

    public int numUsed() { return numBlocks - numFree; }

    /** Blocks findable by hash, referenced or not. */
    public int numCached() { return byHash.size(); }

    public int refCount(int block) { return refCount[block]; }

    public boolean isCached(int block) { return hash[block] != NO_HASH; }

    /** Takes the least recently freed block, evicting its prefix-cache entry; reference count becomes 1. */
    public int allocate() {
        if (numFree == 0) throw new IllegalStateException("no free KV block (" + numBlocks + " all referenced)");
        int b = next[numBlocks];
        unlink(b);
        if (hash[b] != NO_HASH) {
            byHash.remove(hash[b]);
            hash[b] = NO_HASH;
        }
        refCount[b] = 1;
        return b;
    }

    /** Adds a reference; a free (cached) block leaves the free list. */
    public void incRef(int block) {
        if (refCount[block]++ == 0) unlink(block);
    }

    /** Drops a reference; at 0 the block goes to the tail of the free list, keeping its cache entry. */
    public void decRef(int block) {
        if (refCount[block] <= 0) {
            throw new IllegalStateException("block " + block + " released more often than it was referenced");
        }
        if (--refCount[block] == 0) linkTail(block);
    }

    /**
     * The cached block whose hash is {@code h}, whose parent hash is {@code parent} and whose tokens are
     * {@code ids[from, from + blockSize)}, or -1.
     */
    public int lookup(long h, long parent, int[] ids, int from) {
        Integer b = byHash.get(h);
        if (b == null || parentHash[b] != parent
                || !Arrays.equals(tokens, b * blockSize, (b + 1) * blockSize, ids, from, from + blockSize)) {
            return -1;
        }
        return b;
    }

    /**
     * Makes a referenced, full block findable by hash. Returns false (and changes nothing) when another
     * block already holds that content or this block is already cached.
     */
    public boolean register(int block, long h, long parent, int[] ids, int from) {
        if (h == NO_HASH) throw new IllegalArgumentException("hash 0 is reserved for uncached blocks");
        if (refCount[block] == 0) throw new IllegalStateException("block " + block + " is free; only referenced blocks are cached");
        if (hash[block] != NO_HASH || byHash.containsKey(h)) return false;
        hash[block] = h;
        parentHash[block] = parent;
        System.arraycopy(ids, from, tokens, block * blockSize, blockSize);
        byHash.put(h, block);
        return true;
    }

    private void linkTail(int b) {
        int last = prev[numBlocks];
        prev[b] = last;
        next[b] = numBlocks;
        next[last] = b;
        prev[numBlocks] = b;
        numFree++;
    }

    private void unlink(int b) {
        next[prev[b]] = next[b];
        prev[next[b]] = prev[b];
        prev[b] = next[b] = -1;
        numFree--;
    }
}
