package dev.lathe.cpu;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A fixed pool of daemon threads that runs a loop body over contiguous index ranges. The calling
 * thread runs the first chunk itself, so at most {@code threads} chunks run at once. Bodies must not
 * call {@link #forRange} again (the pool is not re-entrant).
 */
final class WorkerPool implements AutoCloseable {
    private static final AtomicInteger POOLS = new AtomicInteger();

    /** The body of a parallel loop over {@code [from, to)}. */
    @FunctionalInterface
    interface RangeBody {
        void run(int from, int to);
    }

    private final int threads;
    private final ExecutorService executor;

    WorkerPool(int threads) {
        if (threads < 1) throw new IllegalArgumentException("cpu backend: thread count must be >= 1, got " + threads);
        this.threads = threads;
        int pool = POOLS.incrementAndGet();
        var count = new AtomicInteger();
        this.executor = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "lathe-cpu-" + pool + "-" + count.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
    }

    int threads() { return threads; }

    /**
     * Runs {@code body} over {@code [0, n)} split into at most {@link #threads} chunks of at least
     * {@code minChunk} indices (one chunk runs on the caller, without a hand-off). Rethrows the first
     * failure of any chunk after all have finished.
     */
    void forRange(int n, int minChunk, RangeBody body) {
        if (n <= 0) return;
        int chunks = (int) Math.min(threads, Math.max(1, n / Math.max(1, minChunk)));
        if (chunks == 1) {
            body.run(0, n);
            return;
        }
        Future<?>[] futures = new Future<?>[chunks - 1];
        for (int c = 1; c < chunks; c++) {
            int from = (int) ((long) n * c / chunks), to = (int) ((long) n * (c + 1) / chunks);
            futures[c - 1] = executor.submit(() -> body.run(from, to));
        }
        Throwable failure = null;
        try {
            body.run(0, (int) ((long) n / chunks));
        } catch (Throwable t) {
            failure = t;
        }
        boolean interrupted = false;
        for (Future<?> f : futures) {
            while (true) {
                try {
                    f.get();
                    break;
                } catch (ExecutionException e) {
                    failure = addFailure(failure, e.getCause());
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // finish waiting: the chunks still write into caller-owned arrays
                }
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        if (failure instanceof RuntimeException r) throw r;
        if (failure instanceof Error err) throw err;
        if (failure != null) throw new IllegalStateException(failure);
    }

    private static Throwable addFailure(Throwable first, Throwable next) {
        if (first == null) return next;
        first.addSuppressed(next);
        return first;
    }

    @Override
    public void close() {
        executor.shutdownNow();
    }
}
