package dev.lathe.cuda;

import java.util.ArrayDeque;

/**
 * Where in a pinned host buffer of {@code capacity} bytes the next host-to-device copy is packed, for copies
 * queued in order on one stream. Each copy takes the next free range, as a ring; a range is handed out again
 * only once the copy that last read it has completed, which a fence (a CUDA event recorded after the copy)
 * tells. So a small copy queued behind a long-running kernel does not wait for that kernel: only a copy that
 * laps the ring while its oldest ranges are still queued does.
 *
 * <p>Use: {@link #reserve} a range, pack the bytes into it and queue the copy, then {@link #queued} to
 * fence that range. {@link #drained} forgets every fence once the stream has been synchronized.
 *
 * @param <F> the fence type
 */
final class StagingRing<F> {
    /** How fences are made, waited on and checked. */
    interface Fences<F> {
        /** A fence that completes when the work queued so far has. */
        F record();

        /** Waits for {@code fence}. */
        void await(F fence);

        /** Whether {@code fence} has completed, without waiting. */
        boolean isComplete(F fence);

        /** {@code fence} is no longer needed (it may be recorded again by a later {@link #record}). */
        void recycle(F fence);
    }

    /** Ranges start at multiples of this many bytes (the copy engines move aligned pieces faster). */
    static final long ALIGN = 256;

    private record Range<F>(long start, F fence) {}

    private final long capacity;
    private final Fences<F> fences;
    /** Fenced ranges, oldest first; a range's start is a position in the ring's unwrapped byte sequence. */
    private final ArrayDeque<Range<F>> pending = new ArrayDeque<>();
    private long head;          // unwrapped position of the next free byte
    private long reserved = -1; // unwrapped start of the range handed out and not yet fenced

    StagingRing(long capacity, Fences<F> fences) {
        if (capacity <= 0 || capacity % ALIGN != 0) {
            throw new IllegalArgumentException("staging ring: capacity " + capacity + " is not a positive multiple of " + ALIGN);
        }
        this.capacity = capacity;
        this.fences = fences;
    }

    long capacity() { return capacity; }

    /**
     * The byte offset in the buffer of a free range of {@code bytes} (1 to {@link #capacity}) bytes. Waits for
     * the fences of older ranges that the new one overlaps, if any are still pending.
     */
    long reserve(long bytes) {
        if (bytes <= 0 || bytes > capacity) {
            throw new IllegalArgumentException("staging ring: " + bytes + " bytes do not fit a ring of " + capacity);
        }
        if (reserved >= 0) throw new IllegalStateException("staging ring: the last range was not fenced");
        long start = (head + ALIGN - 1) / ALIGN * ALIGN;
        if (start % capacity + bytes > capacity) start = (start / capacity + 1) * capacity;  // no range wraps
        // the last lap's bytes [start - capacity, start + bytes - capacity) are the ones reused: every range
        // that began before start + bytes - capacity overlaps them (the ranges follow one another)
        long reuseEnd = start + bytes - capacity;
        while (!pending.isEmpty()) {
            Range<F> oldest = pending.peekFirst();
            if (oldest.start() < reuseEnd) fences.await(oldest.fence());
            else if (!fences.isComplete(oldest.fence())) break;
            pending.pollFirst();
            fences.recycle(oldest.fence());
        }
        head = start + bytes;
        reserved = start;
        return start % capacity;
    }

    /** Fences the range {@link #reserve} handed out last: call after its copy has been queued. */
    void queued() {
        if (reserved < 0) throw new IllegalStateException("staging ring: no range reserved");
        pending.addLast(new Range<>(reserved, fences.record()));
        reserved = -1;
    }

    /** Every queued copy has completed (the stream was synchronized): no range needs its fence any more. */
    void drained() {
        while (!pending.isEmpty()) fences.recycle(pending.pollFirst().fence());
        reserved = -1;
    }

    /** Ranges whose copies may still be queued. */
    int pendingRanges() { return pending.size(); }
}
