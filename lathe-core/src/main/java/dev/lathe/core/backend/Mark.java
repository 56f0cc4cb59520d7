package dev.lathe.core.backend;

/**
 * A point in a backend's queue of work ({@link Backend#mark}), for timing what was queued between two marks.
 */
public interface Mark extends AutoCloseable {
    /** Milliseconds of work from this mark to {@code later} (a mark of the same backend), waiting for it to be reached. */
    double millisTo(Mark later);

    @Override
    default void close() {}

    /** A mark on the host's clock, now: for backends whose ops have finished when they return. */
    static Mark hostNow() { return new HostMark(System.nanoTime()); }

    /** A reading of the host's clock. */
    record HostMark(long nanos) implements Mark {
        @Override
        public double millisTo(Mark later) {
            if (!(later instanceof HostMark h)) throw new IllegalArgumentException("millisTo: a host mark against " + later);
            return (h.nanos - nanos) / 1e6;
        }
    }
}
