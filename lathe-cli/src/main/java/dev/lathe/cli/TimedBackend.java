package dev.lathe.cli;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.ForwardingBackend;
import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.backend.Tensor;

/**
 * A backend that counts the time its caller spends blocked in {@link #download}, which waits for all
 * queued device work: what remains of a step's wall time is the host's own work. Everything else delegates.
 */
final class TimedBackend extends ForwardingBackend {
    private long downloadNanos;

    TimedBackend(Backend inner) { super(inner); }

    long downloadNanos() { return downloadNanos; }

    @Override
    public float[] download(Tensor t) {
        long t0 = System.nanoTime();
        try {
            return inner.download(t);
        } finally {
            downloadNanos += System.nanoTime() - t0;
        }
    }

    /** Waits for queued work too, so its time counts as blocked, as {@link #download}'s does. */
    @Override
    public int[] argmaxRows(Tensor x) {
        long t0 = System.nanoTime();
        try {
            return inner.argmaxRows(x);
        } finally {
            downloadNanos += System.nanoTime() - t0;
        }
    }

    /** Waits for queued work too, then returns a few ints, as {@link #argmaxRows} does. */
    @Override
    public int[] sampleRows(Tensor logits, SampleSpec[] specs) {
        long t0 = System.nanoTime();
        try {
            return inner.sampleRows(logits, specs);
        } finally {
            downloadNanos += System.nanoTime() - t0;
        }
    }
}
