package dev.lathe.core.engine;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BlockPoolTest {
    static final int[] TOKENS = {1, 2, 3, 4, 5, 6, 7, 8};

    @Test
    void allocationTakesTheLeastRecentlyFreedBlock() {
        var pool = new BlockPool(3, 4);
        int a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
        assertThat(pool.numFree()).isZero();
        pool.decRef(b);
        pool.decRef(a);
        pool.decRef(c);
        assertThat(pool.allocate()).isEqualTo(b);
        assertThat(pool.allocate()).isEqualTo(a);
        assertThat(pool.allocate()).isEqualTo(c);
    }

    @Test
    void aCachedFreeBlockIsFoundAndRevivedByReference() {
        var pool = new BlockPool(2, 4);
        int a = pool.allocate();
        assertThat(pool.register(a, 99, 7, TOKENS, 0)).isTrue();
        pool.decRef(a);
        assertThat(pool.numFree()).isEqualTo(2);
        assertThat(pool.lookup(99, 7, TOKENS, 0)).isEqualTo(a);
        pool.incRef(a);
        assertThat(pool.numFree()).isEqualTo(1);
        int other = pool.allocate();
        assertThat(other).isNotEqualTo(a);
        assertThat(pool.lookup(99, 7, TOKENS, 0)).as("a referenced block stays cached").isEqualTo(a);
    }

    @Test
    void allocatingACachedBlockEvictsItsEntry() {
        var pool = new BlockPool(1, 4);
        int a = pool.allocate();
        pool.register(a, 99, 7, TOKENS, 0);
        pool.decRef(a);
        assertThat(pool.allocate()).isEqualTo(a);
        assertThat(pool.lookup(99, 7, TOKENS, 0)).isEqualTo(-1);
        assertThat(pool.numCached()).isZero();
    }

    @Test
    void aHashMatchWithOtherTokensOrParentIsAMiss() {
        var pool = new BlockPool(2, 4);
        int a = pool.allocate();
        pool.register(a, 99, 7, TOKENS, 0);
        assertThat(pool.lookup(99, 7, TOKENS, 4)).isEqualTo(-1);
        assertThat(pool.lookup(99, 8, TOKENS, 0)).isEqualTo(-1);
    }

    @Test
    void aSecondBlockWithTheSameContentIsNotRegistered() {
        var pool = new BlockPool(2, 4);
        int a = pool.allocate(), b = pool.allocate();
        assertThat(pool.register(a, 99, 7, TOKENS, 0)).isTrue();
        assertThat(pool.register(b, 99, 7, TOKENS, 0)).isFalse();
        assertThat(pool.isCached(b)).isFalse();
    }

    @Test
    void releasingAFreeBlockIsAnError() {
        var pool = new BlockPool(2, 4);
        int a = pool.allocate();
        pool.decRef(a);
        assertThatThrownBy(() -> pool.decRef(a)).hasMessageContaining("block " + a);
    }

    @Test
    void anEmptyPoolRefusesToAllocate() {
        var pool = new BlockPool(1, 4);
        pool.allocate();
        assertThatThrownBy(pool::allocate).hasMessageContaining("no free KV block");
    }
}
