package dev.lathe.core.generate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Plain argmax decoding of several sequences in lockstep, without stops: the reference comparisons' loop.
 * The argmax is taken where the logits are ({@link dev.lathe.core.backend.Backend#argmaxRows}).
 */
public final class GreedyDecoder {
    private GreedyDecoder() {}

    /** Prefills every sequence in one step, then appends one argmax token each step; frees them at the end. */
    public static List<int[]> decode(ModelRunner runner, List<Sequence> seqs, int steps) {
        int[] counts = seqs.stream().mapToInt(s -> s.numTokens() - s.numComputed()).toArray();
        try {
            for (int step = 0; step < steps; step++) {
                var logits = runner.step(seqs, counts, new boolean[seqs.size()]);
                for (int s = 0; s < seqs.size(); s++) seqs.get(s).append(logits.argmax(s));
                Arrays.fill(counts, 1);
            }
        } finally {
            seqs.forEach(runner::free);
        }
        List<int[]> out = new ArrayList<>();
        for (Sequence s : seqs) out.add(s.outputTokens());
        return out;
    }
}
