package dev.lathe.core.sampling;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;

class TokenCountsTest {

    @Test
    void countsMatchAHashMapThroughManyResizes() {
        var counts = new TokenCounts();
        Map<Integer, Integer> reference = new HashMap<>();
        var r = new Random(17);
        for (int i = 0; i < 50_000; i++) {
            int t = r.nextInt(i % 2 == 0 ? 152_000 : 64); // many rare ids and a few frequent ones
            counts.add(t);
            reference.merge(t, 1, Integer::sum);
        }
        assertThat(counts.size()).isEqualTo(reference.size());
        Map<Integer, Integer> seen = new HashMap<>();
        for (int i = 0; i < counts.size(); i++) seen.put(counts.token(i), counts.count(counts.token(i)));
        assertThat(seen).isEqualTo(reference);
        assertThat(counts.count(152_001)).isZero();
    }
}
