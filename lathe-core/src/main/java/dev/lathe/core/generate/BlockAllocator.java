package dev.lathe.core.generate;

/**
 * Free KV blocks as a stack of ids. The full block pool with reference counts and prefix reuse
 * (DESIGN.md section 4) replaces this when the scheduler arrives.
 */
final class BlockAllocator {
    private final int[] free;
    private int numFree;

    BlockAllocator(int numBlocks) {
        free = new int[numBlocks];
        for (int i = 0; i < numBlocks; i++) free[i] = numBlocks - 1 - i;
        numFree = numBlocks;
    }

    int numFree() { return numFree; }

    int allocate() {
        if (numFree == 0) throw new IllegalStateException("out of KV-cache blocks");
        return free[--numFree];
    }

    void release(int[] blocks) {
        for (int b : blocks) free[numFree++] = b;
    }
}
