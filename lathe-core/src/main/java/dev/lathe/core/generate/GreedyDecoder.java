package dev.lathe.core.generate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Plain argmax decoding of several sequences in lockstep, without stops: the reference comparisons' loop. */
public final class GreedyDecoder {
    private GreedyDecoder() {}

    /** Prefills every sequence in one step, then appends one argmax token each step; frees them at the end. */
    public static List<int[]> decode(ModelRunner runner, List<Sequence> seqs, int steps) {
        int[] counts = seqs.stream().mapToInt(s -> s.numTokens() - s.numComputed()).toArray();
        try {
            for (int step = 0; step < steps; step++) {
                var logits = runner.step(seqs, counts, false);
                for (int s = 0; s < seqs.size(); s++) seqs.get(s).append(argmax(logits.row(s)));
                Arrays.fill(counts, 1);
            }
        } finally {
            seqs.forEach(runner::free);
        }
        List<int[]> out = new ArrayList<>();
        for (Sequence s : seqs) out.add(s.outputTokens());
        return out;
    }

    /** Index of the largest value; the lowest index on ties. */
    public static int argmax(float[] row) {
        int best = 0;
        for (int i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
