package dev.lathe.core.engine;

import org.junit.jupiter.api.Test;

import static dev.lathe.core.engine.SchedulerDriver.prompt;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class KvCacheManagerTest {
    static final KvCacheManager.CachedPrefix NONE = KvCacheManager.CachedPrefix.NONE;

    @Test
    void allocationIsAllOrNothing() {
        var pool = new BlockPool(4, 4);
        var kv = new KvCacheManager(pool, true);
        assertThat(kv.allocate(1, NONE, 0, 12, null).newBlocks()).hasSize(3);
        assertThat(kv.allocate(2, NONE, 0, 8, null)).isNull();
        assertThat(kv.hasBlocks(2)).isFalse();
        assertThat(pool.numFree()).isEqualTo(1);
        assertThat(kv.allocate(1, NONE, 12, 1, null)).as("growing needs the last block").isNotNull();
        assertThat(pool.numFree()).isZero();
    }

    @Test
    void growingWithinTheLastBlockTakesNothingNew() {
        var kv = new KvCacheManager(new BlockPool(4, 4), false);
        kv.allocate(1, NONE, 0, 5, null);
        assertThat(kv.allocate(1, NONE, 5, 3, null).newBlocks()).isEmpty();
        assertThat(kv.blocks(1)).hasSize(2);
    }

    @Test
    void aPrefixHitRevivesFreedBlocksAndCountsThemAgainstTheFreeBudget() {
        var pool = new BlockPool(3, 4);
        var kv = new KvCacheManager(pool, true);
        int[] tokens = prompt(0, 12);
        kv.allocate(1, NONE, 0, 8, null);
        kv.cacheFullBlocks(1, tokens, 8);
        int[] first = kv.blocks(1);
        kv.free(1);
        assertThat(pool.numFree()).isEqualTo(3);

        var hit = kv.findCachedPrefix(tokens, 12, null);
        assertThat(hit.blocks()).containsExactly(first);
        assertThat(kv.allocate(2, hit, 8, 8, null)).as("2 revived + 2 fresh > 3 free").isNull();
        assertThat(pool.numFree()).isEqualTo(3);
        assertThat(pool.numCached()).as("a refused allocation evicts nothing").isEqualTo(2);

        assertThat(kv.allocate(2, hit, 8, 4, null).newBlocks()).hasSize(1);
        assertThat(kv.blocks(2)).startsWith(first);
        assertThat(pool.refCount(first[0])).isEqualTo(1);
        assertThat(pool.numFree()).isZero();
    }

    @Test
    void prefixLookupStopsAtTheFirstMissingBlock() {
        var kv = new KvCacheManager(new BlockPool(8, 4), true);
        int[] a = prompt(0, 12);
        kv.allocate(1, NONE, 0, 12, null);
        kv.cacheFullBlocks(1, a, 12);
        int[] b = prompt(0, 13);
        b[5] = 99; // differs in the second block: the third, though equal, hangs off another parent
        assertThat(kv.findCachedPrefix(b, 13, null).numTokens()).isEqualTo(4);
        assertThat(kv.findCachedPrefix(a, 12, null).numTokens()).as("one token left to compute").isEqualTo(8);
        assertThat(kv.findCachedPrefix(prompt(0, 13), 13, null).numTokens()).isEqualTo(12);
    }

    @Test
    void nothingIsFoundWithPrefixCachingOff() {
        var kv = new KvCacheManager(new BlockPool(8, 4), false);
        kv.allocate(1, NONE, 0, 12, null);
        kv.cacheFullBlocks(1, prompt(0, 12), 12);
        assertThat(kv.findCachedPrefix(prompt(0, 13), 13, null).numTokens()).isZero();
    }

    @Test
    void aForkSharesBlocksByReferenceUntilBothAreFreed() {
        var pool = new BlockPool(8, 4);
        var kv = new KvCacheManager(pool, false);
        kv.allocate(1, NONE, 0, 10, null);
        int[] parent = kv.blocks(1);
        kv.fork(1, 2, 2);
        assertThat(kv.blocks(2)).containsExactly(parent[0], parent[1]);
        assertThat(pool.refCount(parent[0])).isEqualTo(2);
        assertThat(pool.refCount(parent[2])).isEqualTo(1);
        kv.free(1);
        assertThat(pool.refCount(parent[0])).isEqualTo(1);
        assertThat(pool.refCount(parent[2])).isZero();
        kv.free(2);
        assertThat(pool.numUsed()).isZero();
        assertThatThrownBy(() -> kv.fork(1, 3, 1)).hasMessageContaining("sequence 1");
    }
}
