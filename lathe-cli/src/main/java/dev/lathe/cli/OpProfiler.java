package dev.lathe.cli;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.ForwardingBackend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.Mark;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.backend.Weight;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Times the model's ops on the device while {@link #start}ed: a {@link Backend#mark} before and after each op, summed
 * by op and weight (the layer index taken out of the weight's name, so "linear self_attn.qkv_proj" gathers every
 * layer's). Off, it only forwards. Marks order the device's queue, so a profiled step runs slower than a plain one
 * (kernels no longer overlap their neighbours' ends); the shares are what it is for.
 */
final class OpProfiler extends ForwardingBackend {
    private static final Pattern LAYER = Pattern.compile("^model\\.layers\\.\\d+\\.|\\.weight$");

    /** Totals of one op label: device time between its marks, and host time inside its calls. */
    record Row(String op, int calls, double millis, double hostMillis) {}

    /** How many of a run's first calls {@link Profile#firstCalls} lists. */
    static final int FIRST_CALLS = 12;

    /**
     * One timed run, from {@link #start} to {@link #stop}: the totals by op label (largest first), the run's wall time
     * on the host, the device span from the start of its first op to the end of its last (the ops' sum plus the gaps
     * where the device waited for the host to queue the next op), and on the host clock the time before its first op
     * was called, from then until its last op returned (queued, on a device that runs asynchronously), and after that.
     * All in ms. {@code firstCalls}: the run's first {@link #FIRST_CALLS} calls in order, each with the host time
     * before it (since the previous call returned, or since the start) and inside it, in us: where the host keeps the
     * device waiting at the start of a step.
     */
    record Profile(List<Row> rows, double wallMs, double spanMs, double beforeFirstOpMs, double callingOpsMs,
                   double afterLastOpMs, List<String> firstCalls) {
        double opsMs() { return rows.stream().mapToDouble(Row::millis).sum(); }
    }

    private record Timed(String op, Mark from, Mark to, long hostNanos, long gapNanos) {}

    private final List<Timed> timed = new ArrayList<>();
    private boolean on;
    private long startNanos, firstCallNanos, lastReturnNanos;  // host clock: start, the first op called, the last returned

    OpProfiler(Backend inner) { super(inner); }

    /** Times every op from now until {@link #stop}. */
    void start() {
        release();
        on = true;
        startNanos = firstCallNanos = lastReturnNanos = System.nanoTime();
    }

    /** Stops timing and returns the run (waits for the device to finish the ops). */
    Profile stop() {
        long end = System.nanoTime();
        on = false;
        double span = timed.isEmpty() ? 0 : timed.getFirst().from.millisTo(timed.getLast().to);
        Map<String, double[]> sums = new LinkedHashMap<>();
        List<String> first = new ArrayList<>();
        for (Timed t : timed) {
            double[] s = sums.computeIfAbsent(t.op, k -> new double[3]);
            s[0]++;
            s[1] += t.from.millisTo(t.to);
            s[2] += t.hostNanos / 1e6;
            if (first.size() < FIRST_CALLS) {
                first.add(String.format(Locale.ROOT, "%s (%.1f us before, %.1f us in)", t.op, t.gapNanos / 1e3, t.hostNanos / 1e3));
            }
        }
        release();
        List<Row> rows = new ArrayList<>();
        sums.forEach((op, s) -> rows.add(new Row(op, (int) s[0], s[1], s[2])));
        rows.sort((a, b) -> Double.compare(b.millis, a.millis));
        return new Profile(rows, (end - startNanos) / 1e6, span, (firstCallNanos - startNanos) / 1e6,
                (lastReturnNanos - firstCallNanos) / 1e6, (end - lastReturnNanos) / 1e6, first);
    }

    /** Closes the marks of the timed ops and forgets them. */
    private void release() {
        timed.forEach(t -> { t.from.close(); t.to.close(); });
        timed.clear();
    }

    /** The profile's rows as a table with each op's share of their total. */
    static String table(Profile profile) {
        List<Row> rows = profile.rows();
        double total = profile.opsMs();
        var out = new StringBuilder(String.format(Locale.ROOT, "%-44s %6s %10s %7s %9s%n", "op", "calls", "ms", "share", "host ms"));
        for (Row r : rows) {
            out.append(String.format(Locale.ROOT, "%-44s %6d %10.3f %6.1f%% %9.3f%n", r.op, r.calls, r.millis,
                    total > 0 ? 100 * r.millis / total : 0, r.hostMillis));
        }
        out.append(String.format(Locale.ROOT, "%-44s %6s %10.3f%n", "sum of the ops", "", total));
        return out.toString();
    }

    private static String label(String op, Weight w) { return w == null ? op : op + " " + LAYER.matcher(w.name()).replaceAll(""); }

    private void time(String op, Runnable body) {
        if (!on) {
            body.run();
            return;
        }
        long called = System.nanoTime();
        if (timed.isEmpty()) firstCallNanos = called;  // (with no op at all, the three host times are 0, 0, wall)
        Mark from = inner.mark();
        long t0 = System.nanoTime();
        body.run();
        long t1 = System.nanoTime();
        timed.add(new Timed(op, from, inner.mark(), t1 - t0, called - lastReturnNanos));
        lastReturnNanos = System.nanoTime();
    }

    @Override public void embedding(Weight table, Tensor ids, Tensor out) { time("embedding", () -> super.embedding(table, ids, out)); }
    @Override public void rmsNorm(Tensor x, Weight weight, float eps, Tensor out) { time("rmsNorm", () -> super.rmsNorm(x, weight, eps, out)); }
    @Override public void addRmsNorm(Tensor residual, Tensor x, Weight weight, float eps, Tensor out) {
        time("addRmsNorm", () -> super.addRmsNorm(residual, x, weight, eps, out));
    }
    @Override public void linear(Tensor x, Weight w, Weight bias, Tensor out) { time(label("linear", w), () -> super.linear(x, w, bias, out)); }
    @Override public void linearAdd(Tensor x, Weight w, Weight bias, Tensor acc) {
        time(label("linearAdd", w), () -> super.linearAdd(x, w, bias, acc));
    }
    @Override public void splitColumns(Tensor src, Tensor... outs) { time("splitColumns", () -> super.splitColumns(src, outs)); }
    @Override public void rope(Tensor x, Tensor cos, Tensor sin) { time("rope", () -> super.rope(x, cos, sin)); }
    @Override public void writeKv(KvCache cache, int layer, Tensor k, Tensor v, Tensor slotMapping) {
        time("writeKv", () -> super.writeKv(cache, layer, k, v, slotMapping));
    }
    @Override public void ropeWriteKv(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer, Tensor slotMapping) {
        time("ropeWriteKv", () -> super.ropeWriteKv(qkv, q, cos, sin, cache, layer, slotMapping));
    }
    @Override public void attention(Tensor q, KvCache cache, int layer, AttentionMetadata meta, float scale, Tensor out) {
        time("attention", () -> super.attention(q, cache, layer, meta, scale, out));
    }
    @Override public void ropeAttention(Tensor qkv, Tensor q, Tensor cos, Tensor sin, KvCache cache, int layer,
                                        AttentionMetadata meta, float scale, Tensor out) {
        time("ropeAttention", () -> super.ropeAttention(qkv, q, cos, sin, cache, layer, meta, scale, out));
    }
    @Override public void siluMul(Tensor x, Tensor out) { time("siluMul", () -> super.siluMul(x, out)); }
    @Override public void mlp(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor out) {
        time("mlp (gate/up, SiLU, down)", () -> super.mlp(h, gateUp, gateUpBias, down, downBias, out));
    }
    @Override public void mlpAdd(Tensor h, Weight gateUp, Weight gateUpBias, Weight down, Weight downBias, Tensor acc) {
        time("mlpAdd (gate/up, SiLU, down)", () -> super.mlpAdd(h, gateUp, gateUpBias, down, downBias, acc));
    }
    @Override public void linearSiluMul(Tensor x, Weight w, Weight bias, Tensor out) {
        time(label("linearSiluMul", w), () -> super.linearSiluMul(x, w, bias, out));
    }
    @Override public void gatherRows(Tensor x, Tensor rows, Tensor out) { time("gatherRows", () -> super.gatherRows(x, rows, out)); }
    @Override public Tensor upload(int[] data, int rows, int cols) { return timed("upload", () -> super.upload(data, rows, cols)); }
    @Override public Tensor upload(float[] data, int rows, int cols) { return timed("upload", () -> super.upload(data, rows, cols)); }
    @Override public Tensor[] uploadInts(int[][] data, int[] rows, int[] cols) {
        return timed("uploadInts", () -> super.uploadInts(data, rows, cols));
    }

    /** {@link #time} for an op that returns its result. */
    private <T> T timed(String op, java.util.function.Supplier<T> body) {
        List<T> out = new ArrayList<>(1);
        time(op, () -> out.add(body.get()));
        return out.getFirst();
    }
}
