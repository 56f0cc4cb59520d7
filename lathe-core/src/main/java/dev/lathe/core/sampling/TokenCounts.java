package dev.lathe.core.sampling;

import java.util.Arrays;

/**
 * How often each token id occurs, for the few thousand distinct tokens a request generates: an
 * open-addressing hash table (linear probing, no boxing) plus a dense list of the distinct ids in
 * first-seen order, so penalties visit only tokens that occurred instead of the whole vocabulary.
 */
final class TokenCounts {
    private static final int EMPTY = -1;

    // slots[h] = token id or EMPTY; counts[h] its count. Capacity is a power of two, load <= 1/2.
    private int[] slots = new int[64];
    private int[] counts = new int[64];
    // distinct[0..size) = every id with count > 0, in first-seen order
    private int[] distinct = new int[32];
    private int size;

    TokenCounts() {
        Arrays.fill(slots, EMPTY);
    }

    void add(int token) {
        int h = find(token);
        if (slots[h] == EMPTY) {
            slots[h] = token;
            if (size == distinct.length) distinct = Arrays.copyOf(distinct, size * 2);
            distinct[size++] = token;
            if (size * 2 > slots.length) {
                counts[h] = 1;
                grow();
                return;
            }
        }
        counts[h]++;
    }

    int count(int token) {
        int h = find(token);
        return slots[h] == EMPTY ? 0 : counts[h];
    }

    /** Number of distinct ids seen. */
    int size() {
        return size;
    }

    /** The {@code i}-th distinct id, {@code 0 <= i < size()}. */
    int token(int i) {
        return distinct[i];
    }

    private int find(int token) {
        int mask = slots.length - 1;
        int h = mix(token) & mask;
        while (slots[h] != EMPTY && slots[h] != token) h = (h + 1) & mask;
        return h;
    }

    private void grow() {
        int[] oldSlots = slots, oldCounts = counts;
        slots = new int[oldSlots.length * 2];
        counts = new int[oldSlots.length * 2];
        Arrays.fill(slots, EMPTY);
        for (int i = 0; i < oldSlots.length; i++) {
            if (oldSlots[i] != EMPTY) {
                int h = find(oldSlots[i]);
                slots[h] = oldSlots[i];
                counts[h] = oldCounts[i];
            }
        }
    }

    private static int mix(int x) {
        x *= 0x9E3779B9;
        return x ^ (x >>> 16);
    }
}
