package dev.lathe.core.generate;

import dev.lathe.core.backend.AttentionMetadata;
import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.KvCache;
import dev.lathe.core.backend.SampleSpec;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;
import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.model.LlamaModel;
import dev.lathe.core.model.Rope;
import dev.lathe.core.model.StepInput;
import dev.lathe.core.sampling.Sampler;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs forward steps of a model over a paged KV cache: builds the step's packed inputs and attention
 * metadata from the sequences, grows their block lists, runs the model and returns logits on the host.
 */
public final class ModelRunner implements AutoCloseable {
    private final LlamaModel model;
    private final Backend backend;
    private final ModelConfig config;
    private final Rope rope;
    private final KvCache cache;
    private final BlockAllocator blocks; // null when a KV cache manager hands out the block ids
    private final int blockSize;
    private final int maxModelLen;
    private final boolean useGraphs;
    private final Map<Long, DecodeGraph> graphs = new HashMap<>();
    /**
     * Logits of the decode graphs, one tensor per batch size shared by the graphs of every table width: a
     * replay's logits are read before any other graph runs, so the graphs need not keep their own.
     */
    private final Map<Integer, Tensor> graphLogits = new HashMap<>();
    /**
     * Steps of at least this many tokens take their rotary rows from {@link #ropeCos}/{@link #ropeSin} on the device
     * ({@link Backend#gatherRows} by position) instead of packing and uploading them: for a 2048-token prompt that is
     * an 8 KB upload of positions and two gathers instead of 1 MB of host copies and uploads before the first kernel.
     * Only where the frequencies do not depend on the sequence length (not dynamic NTK scaling).
     */
    static final int ROPE_GATHER_MIN_TOKENS = 64;
    /** The base rotary table on the backend, {@code [rows, half]} each, grown from {@link Rope#baseRows}; null until needed. */
    private Tensor ropeCos, ropeSin;

    /**
     * Logits of one step. {@code data} holds the rows the caller asked for in full, packed in row order:
     * {@code held[r]} is row {@code r}'s place in {@code data} (or -1), and {@code held} is null when every
     * row is there, at place {@code r}. {@code argmax[r]}, when computed, is row {@code r}'s largest column
     * (see {@link dev.lathe.core.backend.Backend#argmaxRows}).
     */
    public record StepLogits(float[] data, int vocab, int[] firstRowOfSeq, int[] held, int[] argmax, int[] sampled) {
        public StepLogits(float[] data, int vocab, int[] firstRowOfSeq) {
            this(data, vocab, firstRowOfSeq, null, null, null);
        }

        public boolean hasRow(int r) { return held == null || held[r] >= 0; }

        /** Whether the backend drew row {@code r}'s token (it had a {@link SampleSpec} this step). */
        public boolean hasSample(int r) { return sampled != null && r < sampled.length && sampled[r] != Backend.NOT_SAMPLED; }

        /** The token the backend drew for row {@code r}; its error codes become the sampler's exceptions. */
        public int sample(int r) {
            if (!hasSample(r)) throw new IllegalStateException("row " + r + " was not sampled by the backend this step");
            return Sampler.checkDeviceToken(sampled[r]);
        }

        /** A copy of row {@code r}; it must be one the step kept in full. */
        public float[] row(int r) {
            if (!hasRow(r)) throw new IllegalStateException("logits row " + r + " was not kept in full for this step");
            int at = held == null ? r : held[r];
            float[] out = new float[vocab];
            System.arraycopy(data, at * vocab, out, 0, vocab);
            return out;
        }

        /** The largest column of row {@code r} (lowest on ties). */
        public int argmax(int r) {
            if (argmax == null) throw new IllegalStateException("this step did not compute argmax rows");
            int a = argmax[r];
            if (a < 0) {
                throw new IllegalStateException("logits row " + r + " holds a NaN: the model produced non-finite values");
            }
            return a;
        }
    }

    /** A runner that allocates blocks itself, from a free stack, as sequences grow. */
    public ModelRunner(LlamaModel model, CacheConfig cacheConfig) {
        this(model, cacheConfig, true);
    }

    /**
     * A runner whose sequences arrive with their blocks already assigned by a KV cache manager (the
     * engine): {@link #step} then only checks that each sequence has blocks for its tokens.
     */
    public static ModelRunner withExternalBlocks(LlamaModel model, CacheConfig cacheConfig) {
        return new ModelRunner(model, cacheConfig, false);
    }

    private ModelRunner(LlamaModel model, CacheConfig cacheConfig, boolean ownBlocks) {
        this.model = model;
        this.backend = model.backend();
        this.config = model.config();
        this.rope = new Rope(config);
        this.blockSize = cacheConfig.blockSize();
        this.maxModelLen = cacheConfig.maxModelLen();
        this.cache = backend.allocateKvCache(config.numLayers(), cacheConfig.numBlocks(), blockSize,
                config.numKvHeads(), config.headDim(), cacheConfig.dtype());
        this.blocks = ownBlocks ? new BlockAllocator(cacheConfig.numBlocks()) : null;
        this.useGraphs = graphsEnabled(backend);
    }

    /** System property: {@code false} runs decode steps eagerly even where the backend can capture them. */
    public static final String GRAPHS_PROPERTY = "lathe.graphs";

    public int maxModelLen() { return maxModelLen; }

    /** Free blocks of this runner's own allocator (0 when blocks come from outside). */
    public int freeBlocks() { return blocks == null ? 0 : blocks.numFree(); }

    public int blockSize() { return blockSize; }

    public ModelConfig config() { return config; }

    /**
     * Computes, for each sequence {@code s}, its next {@code counts[s]} uncomputed tokens. Returns logits
     * for every computed token when {@code allLogits}, else for the last computed token of each sequence.
     */
    public StepLogits step(List<Sequence> seqs, int[] counts, boolean allLogits) {
        return run(seqs, counts, allLogits, false, null,
                (logits, firstRowOfSeq) -> new StepLogits(backend.download(logits), config.vocabSize(), firstRowOfSeq));
    }

    /**
     * As {@link #step(List, int[], boolean) step(seqs, counts, false)}, but every row (one per sequence)
     * gets its argmax computed where the logits are, and only the rows with {@code fullRows[s]} come back
     * whole: greedy sequences need one int, not a vocabulary of floats.
     */
    public StepLogits step(List<Sequence> seqs, int[] counts, boolean[] fullRows) {
        return step(seqs, counts, fullRows, null);
    }

    /**
     * As {@link #step(List, int[], boolean[])}, and the backend draws the token of every sequence {@code s} with
     * a {@code specs[s]} (see {@link Backend#sampleRows}); {@code specs} may be null. Only for backends that
     * {@link Backend#supportsSampling}.
     */
    public StepLogits step(List<Sequence> seqs, int[] counts, boolean[] fullRows, SampleSpec[] specs) {
        return step(seqs, counts, fullRows, specs, null, null);
    }

    /**
     * As {@link #step(List, int[], boolean[], SampleSpec[])}, where some sequences' last token is still on the
     * device: sequence {@code s} with {@code tokenFrom[s] >= 0} computes one token, whose id is row {@code
     * tokenFrom[s]} of {@code previous}'s picks (its value in the sequence is a placeholder). {@code tokenFrom} may
     * be null. Only for backends that {@link Backend#supportsAsyncSteps}.
     */
    public StepLogits step(List<Sequence> seqs, int[] counts, boolean[] fullRows, SampleSpec[] specs, int[] tokenFrom,
                           PendingStep previous) {
        if (fullRows.length != seqs.size() || (specs != null && specs.length != seqs.size())) {
            throw new IllegalArgumentException(fullRows.length + " fullRows flags and " + (specs == null ? 0 : specs.length)
                    + " sample specs for " + seqs.size() + " sequences");
        }
        if (specs != null && !backend.supportsSampling()) {
            throw new IllegalArgumentException("the " + backend.name() + " backend does not sample rows itself; pass no specs");
        }
        Forwarded fwd = forwarded(seqs, counts, tokenFrom, previous);
        return run(seqs, counts, false, true, fwd, (logits, firstRowOfSeq) -> select(logits, fullRows, specs, firstRowOfSeq));
    }

    /**
     * Launches a step whose every row is a greedy pick made where the logits are ({@link Backend#argmaxRowsAsync}),
     * and returns without waiting for it: the picks reach the host through {@link PendingStep#await}, and the next
     * step may take them as inputs on the device ({@code tokenFrom}, as for {@link #step(List, int[], boolean[],
     * SampleSpec[], int[], PendingStep)}). Only for backends that {@link Backend#supportsAsyncSteps}.
     */
    public PendingStep launch(List<Sequence> seqs, int[] counts, int[] tokenFrom, PendingStep previous) {
        if (!backend.supportsAsyncSteps()) {
            throw new IllegalStateException("the " + backend.name() + " backend does not keep token picks on the device");
        }
        Forwarded fwd = forwarded(seqs, counts, tokenFrom, previous);
        return run(seqs, counts, false, true, fwd,
                (logits, firstRowOfSeq) -> new PendingStep(backend.argmaxRowsAsync(logits), firstRowOfSeq, config.vocabSize()));
    }

    /**
     * A launched step's greedy picks, on their way to the host. Close it once the step after it has been
     * launched (which may read the picks on the device) and {@link #await} has been called.
     */
    public static final class PendingStep implements AutoCloseable {
        private final Backend.PendingTokens picks;
        private final int[] firstRowOfSeq;
        private final int vocab;
        private boolean closed;

        PendingStep(Backend.PendingTokens picks, int[] firstRowOfSeq, int vocab) {
            this.picks = picks;
            this.firstRowOfSeq = firstRowOfSeq;
            this.vocab = vocab;
        }

        /** The step's logits as far as the picks go: {@link StepLogits#argmax} for every row, nothing in full. */
        public StepLogits await() {
            int[] argmax = picks.await();
            int[] held = new int[argmax.length];
            Arrays.fill(held, -1);
            return new StepLogits(new float[0], vocab, firstRowOfSeq, held, argmax, null);
        }

        @Override
        public void close() {
            if (closed) return;
            closed = true;
            picks.close();
        }
    }

    /** The token ids a step takes from the previous step's picks: ids row {@code dst[i]} from pick {@code src[i]}. */
    private record Forwarded(PendingStep previous, int[] src, int[] seqOf) {}

    private Forwarded forwarded(List<Sequence> seqs, int[] counts, int[] tokenFrom, PendingStep previous) {
        if (tokenFrom == null) return null;
        if (tokenFrom.length != seqs.size()) {
            throw new IllegalArgumentException(tokenFrom.length + " tokenFrom entries for " + seqs.size() + " sequences");
        }
        int n = 0;
        for (int s = 0; s < tokenFrom.length; s++) {
            if (tokenFrom[s] < 0) continue;
            if (counts[s] != 1) {
                throw new IllegalArgumentException("sequence " + seqs.get(s).id() + " takes its token from the previous step"
                        + " and must compute exactly that one token, not " + counts[s]);
            }
            n++;
        }
        if (n == 0) return null;
        if (previous == null || previous.closed) throw new IllegalArgumentException("tokens taken from a previous step that is not there");
        if (!backend.supportsAsyncSteps()) {
            throw new IllegalStateException("the " + backend.name() + " backend does not keep token picks on the device");
        }
        int[] src = new int[n], seqOf = new int[n];
        for (int s = 0, i = 0; s < tokenFrom.length; s++) {
            if (tokenFrom[s] < 0) continue;
            src[i] = tokenFrom[s];
            seqOf[i++] = s;
        }
        return new Forwarded(previous, src, seqOf);
    }

    /** Feeds the forwarded tokens into a step's ids tensor; {@code rowOfSeq[s]} is sequence s's (only) row there. */
    private void forwardInto(Forwarded fwd, Tensor ids, int[] rowOfSeq) {
        if (fwd == null) return;
        int[] dst = new int[fwd.seqOf().length];
        for (int i = 0; i < dst.length; i++) dst[i] = rowOfSeq[fwd.seqOf()[i]];
        backend.forwardTokens(fwd.previous().picks.tokens(), fwd.src(), ids, dst);
    }

    /** What a step returns, made from its logits tensor (still on the backend) and each sequence's first logits row. */
    @FunctionalInterface
    private interface Pick<R> {
        R from(Tensor logits, int[] firstRowOfSeq);
    }

    /** One step; a decode-only step may replay a captured graph where {@code mayReplay} (its pick works on padded rows). */
    private <R> R run(List<Sequence> seqs, int[] counts, boolean allLogits, boolean mayReplay, Forwarded fwd, Pick<R> pick) {
        if (mayReplay && useGraphs && decodeOnly(counts) && seqs.size() <= GRAPH_BATCHES[GRAPH_BATCHES.length - 1]) {
            return runGraph(seqs, fwd, pick);
        }
        int numSeqs = seqs.size();
        int numTokens = 0;
        int maxBlocksPerSeq = 0;
        int maxContext = 0;
        for (int s = 0; s < numSeqs; s++) {
            Sequence seq = seqs.get(s);
            int end = reserve(seq, counts[s]);
            numTokens += counts[s];
            maxBlocksPerSeq = Math.max(maxBlocksPerSeq, seq.numBlocks());
            maxContext = Math.max(maxContext, end);
        }

        int half = rope.half();
        boolean gatherRope = numTokens >= ROPE_GATHER_MIN_TOKENS && !rope.dependsOnLength();
        int[] ids = new int[numTokens];
        int[] positions = new int[numTokens];
        int[] slots = new int[numTokens];
        int[] queryStarts = new int[numSeqs + 1];
        int[] contextLens = new int[numSeqs];
        int[] blockTable = new int[numSeqs * maxBlocksPerSeq];
        float[] cos = gatherRope ? null : new float[numTokens * half];
        float[] sin = gatherRope ? null : new float[numTokens * half];
        int numLogitRows = allLogits ? numTokens : numSeqs;
        int[] logitRows = new int[numLogitRows];
        int[] firstRowOfSeq = new int[numSeqs];
        int t = 0;
        for (int s = 0; s < numSeqs; s++) {
            Sequence seq = seqs.get(s);
            int start = seq.numComputed();
            queryStarts[s] = t;
            contextLens[s] = start + counts[s];
            for (int b = 0; b < maxBlocksPerSeq; b++) {
                blockTable[s * maxBlocksPerSeq + b] = b < seq.numBlocks() ? seq.block(b) : -1;
            }
            // bulk copies and a loop per block: a prefill-only process runs this once a step, so it stays interpreted
            // for dozens of steps, where a per-token loop with calls in it took ~0.1 ms for 2048 tokens
            int count = counts[s];
            seq.copyTokens(start, count, ids, t);
            System.arraycopy(ramp(start + count), start, positions, t, count);
            for (int pos = start, i = t; pos < start + count; ) {
                int b = pos / blockSize, off = pos - b * blockSize, run = Math.min(blockSize - off, start + count - pos);
                int base = seq.block(b) * blockSize + off;
                for (int j = 0; j < run; j++) slots[i + j] = base + j;
                pos += run;
                i += run;
            }
            if (!gatherRope) fillRope(positions, t, counts[s], seq.numPromptTokens(), cos, sin);
            if (allLogits) {
                firstRowOfSeq[s] = t;
                for (int i = 0; i < counts[s]; i++) logitRows[t + i] = t + i;
            } else {
                firstRowOfSeq[s] = s;
                logitRows[s] = t + counts[s] - 1;
            }
            t += counts[s];
        }
        queryStarts[numSeqs] = t;

        if (gatherRope) ropeTable(maxContext - 1);
        // fewer logit rows than rows (one a sequence, its last): their attention alone, for a last layer cut to them
        boolean logitMeta = !allLogits && numLogitRows < numTokens;
        int[] logitStarts = logitMeta ? Arrays.copyOf(ramp(numSeqs + 1), numSeqs + 1) : null;
        int[] logitSlots = null;
        if (logitMeta) {
            logitSlots = new int[numSeqs];
            for (int s = 0; s < numSeqs; s++) logitSlots[s] = slots[logitRows[s]];
        }
        // the step's int arrays in one upload where the backend packs them; the positions serve the rotary gathers only,
        // the last two (logit-row attention) go up only where there is one
        int arrays = logitMeta ? 9 : 7;
        Tensor[] up = backend.uploadInts(
                Arrays.copyOf(new int[][]{queryStarts, contextLens, blockTable, slots, ids, logitRows, positions, logitStarts, logitSlots},
                        arrays),
                Arrays.copyOf(new int[]{1, 1, numSeqs, 1, 1, 1, 1, 1, 1}, arrays),
                Arrays.copyOf(new int[]{numSeqs + 1, numSeqs, maxBlocksPerSeq, numTokens, numTokens, numLogitRows, numTokens,
                        numSeqs + 1, numSeqs}, arrays));
        R result;
        Tensor cosTensor = null, sinTensor = null;
        try (Tensor pos = up[6]) {
            if (gatherRope) {
                cosTensor = backend.allocate(DType.F32, numTokens, half);
                sinTensor = backend.allocate(DType.F32, numTokens, half);
                backend.gatherRows(ropeCos, pos, cosTensor);
                backend.gatherRows(ropeSin, pos, sinTensor);
            } else {
                cosTensor = backend.upload(cos, numTokens, half);
                sinTensor = backend.upload(sin, numTokens, half);
            }
        } catch (RuntimeException e) {
            for (int i = 0; i < up.length; i++) if (i != 6) up[i].close();
            if (cosTensor != null) cosTensor.close();
            if (sinTensor != null) sinTensor.close();
            throw e;
        }
        var meta = new AttentionMetadata(numSeqs, numTokens, maxContext, up[0], up[1], up[2], up[3], queryStarts, contextLens,
                config.slidingWindow());
        var logitAttention = logitMeta ? new AttentionMetadata(numSeqs, numSeqs, maxContext, up[7], up[1], up[2], up[8],
                logitStarts, contextLens, config.slidingWindow()) : null;
        Tensor idsTensor = up[4];
        try (var in = new StepInput(idsTensor, cosTensor, sinTensor, meta, up[5], logitAttention)) {
            forwardInto(fwd, idsTensor, queryStarts);  // a forwarded sequence computes one token: its row is its start
            try (Tensor logits = model.forward(in, cache)) {
                result = pick.from(logits, firstRowOfSeq);
            }
        }
        for (int s = 0; s < numSeqs; s++) seqs.get(s).advanceComputed(counts[s]);
        return result;
    }

    /** Argmax, draws and the full rows asked for; {@code fullRows} and {@code specs} are per sequence (graph rows past them are padding). */
    private StepLogits select(Tensor logits, boolean[] fullRows, SampleSpec[] specs, int[] firstRowOfSeq) {
        if (fullRows.length < logits.rows()) fullRows = Arrays.copyOf(fullRows, logits.rows());  // graph padding
        int vocab = config.vocabSize();
        int drawn = 0;
        if (specs != null) for (SampleSpec s : specs) if (s != null) drawn++;
        // a step whose every row the backend draws needs no argmax: one wait for the device instead of two
        int[] argmax = specs != null && drawn == specs.length ? null : backend.argmaxRows(logits);
        int[] sampled = null;
        if (drawn > 0) {
            SampleSpec[] perRow = specs.length == logits.rows() ? specs : Arrays.copyOf(specs, logits.rows());  // graph padding
            sampled = backend.sampleRows(logits, perRow);
        }
        int[] held = new int[fullRows.length];
        int kept = 0;
        for (int r = 0; r < fullRows.length; r++) held[r] = fullRows[r] ? kept++ : -1;
        float[] data;
        if (kept == fullRows.length) {
            data = backend.download(logits);
        } else if (kept == 0) {
            data = new float[0];
        } else {
            int[] rows = new int[kept];
            for (int r = 0; r < fullRows.length; r++) if (held[r] >= 0) rows[held[r]] = r;
            try (Tensor idx = backend.upload(rows, 1, kept); Tensor part = backend.allocate(DType.F32, kept, vocab)) {
                backend.gatherRows(logits, idx, part);
                data = backend.download(part);
            }
        }
        return new StepLogits(data, vocab, firstRowOfSeq, held, argmax, sampled);
    }

    /** 0, 1, 2, ... up to at least {@code length} values: the positions of a step are a copied range of it. */
    private int[] ramp(int length) {
        if (ramp.length < length) {
            ramp = new int[Math.max(length, 2 * ramp.length)];
            for (int i = 0; i < ramp.length; i++) ramp[i] = i;
        }
        return ramp;
    }

    private int[] ramp = new int[0];

    /** Makes {@link #ropeCos}/{@link #ropeSin} cover position {@code most}, uploading the base table again if it grew. */
    private void ropeTable(int most) {
        if (ropeCos != null && most < ropeCos.rows()) return;
        float[][] table = rope.baseRows(most);
        int half = rope.half(), rows = table[0].length / half;
        Tensor c = backend.upload(table[0], rows, half);
        Tensor s;
        try {
            s = backend.upload(table[1], rows, half);
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
        closeRopeTable();
        ropeCos = c;
        ropeSin = s;
    }

    private void closeRopeTable() {
        if (ropeCos != null) ropeCos.close();
        if (ropeSin != null) ropeSin.close();
        ropeCos = ropeSin = null;
    }

    /**
     * Rotary tables for {@code count} tokens from row {@code from}. A token at position {@code p} is rotated
     * for the sequence length {@code max(p + 1, promptLen)}: transformers computes a prompt in one pass (its
     * length sets dynamic NTK scaling for every prompt token) and then one token at a time. Taking the
     * length per token, not per step, makes a chunked prefill rotate exactly as the one-pass prompt did;
     * for every other scaling type the length does not matter.
     */
    private void fillRope(int[] positions, int from, int count, int promptLen, float[] cos, float[] sin) {
        if (!rope.dependsOnLength()) {
            rope.fill(positions, from, count, rope.invFreq(0), cos, sin, from);
            return;
        }
        for (int i = 0; i < count; ) {
            int len = Math.max(positions[from + i] + 1, promptLen);
            int run = 1;
            while (i + run < count && Math.max(positions[from + i + run] + 1, promptLen) == len) run++;
            rope.fill(positions, from + i, run, rope.invFreq(len), cos, sin, from + i);
            i += run;
        }
    }

    // ---- decode steps as captured graphs ----------------------------------------------------------

    /**
     * System property: the largest decode batch run from a captured graph (default 512); larger decode steps run
     * eagerly. Graphs are recorded for powers of two up to 256, then every multiple of 128 up to this.
     */
    public static final String GRAPH_MAX_BATCH_PROPERTY = "lathe.graphs.maxBatch";
    private static final int GRAPH_MAX_BATCH_DEFAULT = 512;
    /** Batch sizes decode graphs are recorded for; a step runs in the smallest that holds it, padded. */
    private static final int[] GRAPH_BATCHES = graphBatchesUpTo(Integer.getInteger(GRAPH_MAX_BATCH_PROPERTY, GRAPH_MAX_BATCH_DEFAULT));

    static int[] graphBatchesUpTo(int max) {
        if (max < 1) {
            throw new IllegalArgumentException(GRAPH_MAX_BATCH_PROPERTY + " is " + max + ": the largest graph batch must be 1 or more");
        }
        var sizes = new java.util.ArrayList<Integer>();
        for (int b = 1; b <= Math.min(max, 256); b *= 2) sizes.add(b);
        for (int b = 384; b <= max; b += 128) sizes.add(b);
        if (sizes.getLast() != max) sizes.add(max);
        return sizes.stream().mapToInt(Integer::intValue).toArray();
    }
    /** Block-table widths are powers of two from this many blocks up to what maxModelLen needs. */
    private static final int GRAPH_MIN_TABLE_WIDTH = 16;

    /** The batch sizes decode graphs are recorded for. */
    public static int[] graphBatches() { return GRAPH_BATCHES.clone(); }

    /** Whether runners on {@code backend} replay decode steps from graphs (see {@link #GRAPHS_PROPERTY}). */
    public static boolean graphsEnabled(Backend backend) {
        return backend.supportsGraphs() && Boolean.parseBoolean(System.getProperty(GRAPHS_PROPERTY, "true"));
    }

    private static boolean decodeOnly(int[] counts) {
        for (int c : counts) if (c != 1) return false;
        return counts.length > 0;
    }

    /**
     * A decode step (one new token per sequence) through a recorded graph: the step's inputs are copied into
     * the graph's own tensors and the whole forward pass is replayed as one unit, so no op is launched one by
     * one from here. Graphs are keyed by padded batch size and block-table width; the first step of a key
     * runs eagerly over the graph's tensors (which also sets up everything the recording needs), then
     * records. Padding rows compute a token 0 at position 0 that is written nowhere (slot -1) and ignored.
     */
    private <R> R runGraph(List<Sequence> seqs, Forwarded fwd, Pick<R> pick) {
        int numSeqs = seqs.size();
        int batch = 1;
        for (int b : GRAPH_BATCHES) {
            if (b >= numSeqs) {
                batch = b;
                break;
            }
        }
        int neededWidth = 1;
        for (int s = 0; s < numSeqs; s++) {
            Sequence seq = seqs.get(s);
            reserve(seq, 1);
            neededWidth = Math.max(neededWidth, seq.numBlocks());
        }
        int maxWidth = (maxModelLen + blockSize - 1) / blockSize;
        int width = Math.min(maxWidth, Math.max(GRAPH_MIN_TABLE_WIDTH, Integer.highestOneBit(neededWidth - 1) << 1));
        width = Math.max(width, neededWidth);

        int half = rope.half();
        int[] ids = new int[batch], positions = new int[batch], slots = new int[batch], lens = new int[batch];
        int[] starts = new int[batch + 1], table = new int[batch * width], rows = new int[batch];
        float[] cos = new float[batch * half], sin = new float[batch * half];
        Arrays.fill(slots, -1);
        Arrays.fill(lens, 1);
        for (int r = 0; r < batch; r++) {
            starts[r + 1] = r + 1;
            rows[r] = r;
        }
        for (int s = 0; s < numSeqs; s++) {
            Sequence seq = seqs.get(s);
            int pos = seq.numComputed();
            ids[s] = seq.token(pos);
            positions[s] = pos;
            slots[s] = seq.block(pos / blockSize) * blockSize + pos % blockSize;
            lens[s] = pos + 1;
            for (int b = 0; b < width; b++) table[s * width + b] = b < seq.numBlocks() ? seq.block(b) : -1;
            fillRope(positions, s, 1, seq.numPromptTokens(), cos, sin);
        }
        // padding rows: position 0 (cos 1, sin 0), a block table of one real block so the kernels read valid memory
        int someBlock = seqs.getFirst().block(0);
        for (int r = numSeqs; r < batch; r++) {
            table[r * width] = someBlock;
            for (int b = 1; b < width; b++) table[r * width + b] = -1;
            rope.fill(positions, r, 1, rope.invFreq(0), cos, sin, r);
        }

        long key = (long) batch << 32 | width;
        DecodeGraph g = graphs.get(key);
        Tensor logits;
        if (g == null) {
            g = new DecodeGraph(batch, width);
            g.write(ids, cos, sin, starts, lens, table, slots, rows);
            forwardInto(fwd, g.input.tokenIds(), rows);  // row s is sequence s
            DecodeGraph made = g;
            R result = null;
            try (Tensor eager = model.forward(g.input, cache)) {
                result = pick.from(eager, firstRows(numSeqs));
                Tensor shared = graphLogits.computeIfAbsent(batch, b -> backend.allocate(DType.F32, b, config.vocabSize()));
                g.graph = backend.capture(() -> model.forward(made.input, cache, shared));
                g.logits = shared;
                graphs.put(key, g);
                for (int s = 0; s < numSeqs; s++) seqs.get(s).advanceComputed(1);
                return result;
            } catch (RuntimeException | Error e) {
                g.close();
                if (result instanceof AutoCloseable pending) {  // picks on their way (launch): nobody will read them
                    try {
                        pending.close();
                    } catch (Exception again) {
                        e.addSuppressed(again);
                    }
                }
                throw e;
            }
        }
        g.write(ids, cos, sin, starts, lens, table, slots, rows);
        forwardInto(fwd, g.input.tokenIds(), rows);
        g.graph.replay();
        logits = g.logits;
        R result = pick.from(logits, firstRows(numSeqs));
        for (int s = 0; s < numSeqs; s++) seqs.get(s).advanceComputed(1);
        return result;
    }

    private static int[] firstRows(int numSeqs) {
        int[] f = new int[numSeqs];
        for (int s = 0; s < numSeqs; s++) f[s] = s;
        return f;
    }

    /** The tensors a decode graph reads and writes, its recording, and the logits it leaves. */
    private final class DecodeGraph implements AutoCloseable {
        final StepInput input;
        final int[] capacity;  // upper-bound context lengths for the metadata's host copy
        Backend.Graph graph;
        Tensor logits;

        DecodeGraph(int batch, int width) {
            int half = rope.half();
            capacity = new int[batch];
            Arrays.fill(capacity, width * blockSize);
            int[] hostStarts = new int[batch + 1];
            for (int r = 0; r < batch; r++) hostStarts[r + 1] = r + 1;
            var meta = new AttentionMetadata(batch, batch, width * blockSize,
                    backend.allocate(DType.I32, 1, batch + 1), backend.allocate(DType.I32, 1, batch),
                    backend.allocate(DType.I32, batch, width), backend.allocate(DType.I32, 1, batch),
                    hostStarts, capacity, config.slidingWindow());
            input = new StepInput(backend.allocate(DType.I32, 1, batch), backend.allocate(DType.F32, batch, half),
                    backend.allocate(DType.F32, batch, half), meta, backend.allocate(DType.I32, 1, batch));
        }

        void write(int[] ids, float[] cos, float[] sin, int[] starts, int[] lens, int[] table, int[] slots, int[] rows) {
            var meta = input.attention();
            backend.write(input.tokenIds(), ids);
            backend.write(input.cos(), cos);
            backend.write(input.sin(), sin);
            backend.write(meta.queryStarts(), starts);
            backend.write(meta.contextLens(), lens);
            backend.write(meta.blockTables(), table);
            backend.write(meta.slotMapping(), slots);
            backend.write(input.logitRows(), rows);
        }

        @Override
        public void close() {
            if (graph != null) graph.close();
            input.close();
        }
    }

    /**
     * Checks that {@code seq} can compute its next {@code count} tokens within the context limit and makes
     * sure it has blocks for them; returns the context length after the step.
     */
    private int reserve(Sequence seq, int count) {
        int end = seq.numComputed() + count;
        if (count <= 0 || end > seq.numTokens()) {
            throw new IllegalArgumentException("sequence " + seq.id() + ": cannot compute " + count
                    + " tokens (" + seq.numComputed() + " of " + seq.numTokens() + " computed)");
        }
        if (end > maxModelLen) throw new ContextLengthException(end, maxModelLen);
        ensureBlocks(seq, end);
        return end;
    }

    /** Returns the sequence's blocks to the pool; it must be recomputed to run again. */
    public void free(Sequence seq) {
        int[] taken = seq.takeBlocks();
        if (blocks != null) blocks.release(taken);
    }

    private void ensureBlocks(Sequence seq, int tokens) {
        int needed = (tokens + blockSize - 1) / blockSize;
        if (blocks == null) {
            if (seq.numBlocks() < needed) {
                throw new IllegalStateException("sequence " + seq.id() + " has " + seq.numBlocks() + " KV blocks for "
                        + tokens + " tokens, needs " + needed + "; the KV cache manager must assign blocks before the step");
            }
            return;
        }
        if (needed - seq.numBlocks() > blocks.numFree()) {
            throw new IllegalStateException("KV cache full: sequence " + seq.id() + " needs "
                    + (needed - seq.numBlocks()) + " more blocks of " + blockSize + " tokens, " + blocks.numFree()
                    + " free; raise --kv-blocks or lower --max-model-len");
        }
        while (seq.numBlocks() < needed) seq.addBlock(blocks.allocate());
    }

    @Override
    public void close() {
        for (DecodeGraph g : graphs.values()) g.close();
        graphs.clear();
        for (Tensor t : graphLogits.values()) t.close();
        graphLogits.clear();
        closeRopeTable();
        cache.close();
    }

    /** Sizes of the KV cache: {@code numBlocks} blocks of {@code blockSize} tokens in {@code dtype}. */
    public record CacheConfig(int blockSize, int numBlocks, int maxModelLen, DType dtype) {
        public CacheConfig {
            if (blockSize <= 0 || numBlocks <= 0 || maxModelLen <= 0) {
                throw new IllegalArgumentException("cache sizes must be positive: blockSize=" + blockSize
                        + " numBlocks=" + numBlocks + " maxModelLen=" + maxModelLen);
            }
        }

        /** Enough blocks for {@code maxSeqs} sequences of {@code maxModelLen} tokens. */
        public static CacheConfig forSequences(int maxModelLen, int maxSeqs, int blockSize, DType dtype) {
            int perSeq = (maxModelLen + blockSize - 1) / blockSize;
            return new CacheConfig(blockSize, perSeq * maxSeqs, maxModelLen, dtype);
        }
    }
}
