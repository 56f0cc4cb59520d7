package dev.lathe.core.model;

import dev.lathe.core.config.ModelConfig;
import dev.lathe.core.config.RopeScaling;

/**
 * Rotary position embedding tables for a model, computed on the host the way Hugging Face
 * transformers computes them in float32: inverse frequencies per scaling type, then
 * {@code angle = (float) position * invFreq} rounded to float, then cos/sin of that angle.
 *
 * <p>DYNAMIC (NTK) scaling depends on the sequence length: a sequence longer than max_position_embeddings
 * gets a larger base; cached keys keep the rotation they were written with, exactly as transformers does
 * with a KV cache. Which length applies to which token is the caller's choice (see ModelRunner).
 */
public final class Rope {
    private final int headDim;
    private final int half;
    private final double theta;
    private final RopeScaling scaling;
    private final int maxPositions;
    private final float[] baseInvFreq; // [half], for every sequence length that needs no dynamic scaling
    /**
     * cos and sin of the base frequencies for positions 0 .. n-1, rows of {@code half}: each value is computed once,
     * the same way {@link #fill} would, instead of two Math calls per value at every step (a 2048-token prompt
     * needs 262,144 of them). Grown by doubling; replaced whole, so a reader always sees a complete table.
     */
    private volatile float[][] baseTable = {new float[0], new float[0]};
    private static final int TABLE_MIN_POSITIONS = 1024;

    public Rope(ModelConfig config) {
        this.headDim = config.headDim();
        this.half = headDim / 2;
        this.theta = config.ropeTheta();
        this.scaling = config.ropeScaling() == null ? RopeScaling.NONE : config.ropeScaling();
        this.maxPositions = config.maxPositionEmbeddings();
        this.baseInvFreq = computeInvFreq(theta);
        applyStaticScaling(baseInvFreq);
    }

    public int half() { return half; }

    /** True when the frequencies depend on the sequence length (dynamic NTK scaling). */
    public boolean dependsOnLength() { return scaling.type() == RopeScaling.Type.DYNAMIC; }

    /** Inverse frequencies used for a sequence whose length (last position + 1) is {@code seqLen}. */
    public float[] invFreq(int seqLen) {
        if (scaling.type() == RopeScaling.Type.DYNAMIC && seqLen > maxPositions) {
            double factor = scaling.factor();
            double base = theta * Math.pow(factor * seqLen / maxPositions - (factor - 1), headDim / (double) (headDim - 2));
            return computeInvFreq(base);
        }
        return baseInvFreq;
    }

    /**
     * Writes cos and sin of {@code count} tokens at {@code positions[from..from+count)} into rows
     * {@code rowOffset..} of {@code cos}/{@code sin} ({@code [rows, half]} row-major).
     */
    public void fill(int[] positions, int from, int count, float[] invFreq, float[] cos, float[] sin, int rowOffset) {
        int most = 0, least = 0;
        for (int t = 0; t < count; t++) {
            most = Math.max(most, positions[from + t]);
            least = Math.min(least, positions[from + t]);
        }
        if (least < 0) throw new IllegalArgumentException("negative position " + least);
        if (invFreq == baseInvFreq && count > 0) {
            float[][] table = baseTable(most);
            // one copy per run of consecutive positions (a prompt chunk): its rows lie one after another in the table too
            for (int t = 0; t < count; ) {
                int run = 1;
                while (t + run < count && positions[from + t + run] == positions[from + t] + run) run++;
                int at = positions[from + t] * half, base = (rowOffset + t) * half;
                System.arraycopy(table[0], at, cos, base, run * half);
                System.arraycopy(table[1], at, sin, base, run * half);
                t += run;
            }
            return;
        }
        for (int t = 0; t < count; t++) row(positions[from + t], invFreq, cos, sin, (rowOffset + t) * half);
    }

    /** cos and sin of one position's angles ({@code (float) position * invFreq}, rounded to float) from {@code base}. */
    private void row(int position, float[] invFreq, float[] cos, float[] sin, int base) {
        float pos = position;
        for (int j = 0; j < half; j++) {
            float angle = pos * invFreq[j];
            cos[base + j] = (float) Math.cos(angle);
            sin[base + j] = (float) Math.sin(angle);
        }
    }

    /**
     * cos ({@code [0]}) and sin ({@code [1]}) of the base frequencies ({@code invFreq(0)}) for positions 0 .. n-1 with
     * n > {@code most}, rows of {@link #half()} values: the rows {@link #fill} copies for those positions. The arrays
     * are shared: do not change them.
     */
    public float[][] baseRows(int most) {
        if (most < 0) throw new IllegalArgumentException("negative position " + most);
        return baseTable(most);
    }

    /**
     * The base table covering position {@code most} (not negative), grown first if needed: doubling, but not past
     * max_position_embeddings while below it, then to what a longer sequence needs.
     */
    private float[][] baseTable(int most) {
        float[][] t = baseTable;
        if ((long) most * half < t[0].length) return t;
        synchronized (this) {
            t = baseTable;
            int have = t[0].length / half;
            if (most < have) return t;
            long target = Math.max(TABLE_MIN_POSITIONS, 2L * have);
            if (have < maxPositions) target = Math.min(target, maxPositions);
            int n = (int) Math.min(Integer.MAX_VALUE / half, Math.max(most + 1L, target));
            float[] c = java.util.Arrays.copyOf(t[0], n * half), s = java.util.Arrays.copyOf(t[1], n * half);
            for (int p = have; p < n; p++) row(p, baseInvFreq, c, s, p * half);
            baseTable = new float[][]{c, s};
            return baseTable;
        }
    }

    // 1 / theta^(2j / dim), with the exponent formed in float32 as transformers does.
    private float[] computeInvFreq(double base) {
        float[] inv = new float[half];
        for (int j = 0; j < half; j++) {
            float exponent = (float) (2 * j) / (float) headDim;
            float p = (float) Math.pow(base, exponent);
            inv[j] = 1.0f / p;
        }
        return inv;
    }

    private void applyStaticScaling(float[] inv) {
        switch (scaling.type()) {
            case LINEAR -> {
                for (int j = 0; j < inv.length; j++) inv[j] = (float) (inv[j] / scaling.factor());
            }
            case LLAMA3 -> {
                // Frequencies whose wavelength is short (high frequency) stay; long ones are divided by
                // factor; the band between is interpolated smoothly.
                double factor = scaling.factor();
                double oldCtx = scaling.originalMaxPositionEmbeddings();
                double lowFreqWavelen = oldCtx / scaling.lowFreqFactor();
                double highFreqWavelen = oldCtx / scaling.highFreqFactor();
                for (int j = 0; j < inv.length; j++) {
                    float f = inv[j];
                    double wavelen = 2 * Math.PI / f;
                    float scaled = wavelen > lowFreqWavelen ? (float) (f / factor) : f;
                    boolean medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
                    if (medium) {
                        double smooth = (oldCtx / wavelen - scaling.lowFreqFactor())
                                / (scaling.highFreqFactor() - scaling.lowFreqFactor());
                        scaled = (float) ((1 - smooth) * scaled / factor + smooth * scaled);
                    }
                    inv[j] = scaled;
                }
            }
            case NONE, DYNAMIC -> { }
        }
    }
}
