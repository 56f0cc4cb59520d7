package dev.lathe.core.sampling;

import java.util.List;

/**
 * Finds stop strings in streamed text and decides how much of the text may be shown now.
 *
 * <p>Text arrives in deltas (one per token); a stop string may span several. Each {@link #emit} returns
 * the part of the text so far that can no longer turn out to be part of a stop string; the longest
 * suffix that is a proper prefix of some stop string is held back until later text confirms or rules
 * it out, so a streaming client never sees part of a stop string. When a stop string completes, the
 * text before it (or up to its end, with {@code includeStop}) is released and everything after is
 * dropped.
 *
 * <p>The result does not depend on how the text is split into deltas: of the matches completed by one
 * delta, the one that ends first wins (the longest, if several end at the same character), which is
 * what feeding the text one character at a time would give.
 */
public final class StopStringMatcher {
    private final List<String> stops;
    private final boolean includeStop;
    private final int longest;
    // Text not yet released: always a proper prefix of some stop string (so shorter than the longest).
    private final StringBuilder held = new StringBuilder();
    private String matched;

    public StopStringMatcher(List<String> stops, boolean includeStop) {
        this.stops = List.copyOf(stops);
        this.includeStop = includeStop;
        this.longest = this.stops.stream().mapToInt(String::length).max().orElse(0);
        for (String s : this.stops) {
            if (s.isEmpty()) throw new IllegalArgumentException("stop strings must not be empty: " + stops);
        }
    }

    /** Adds {@code delta} and returns what may be shown now (empty once a stop string matched). */
    public String emit(String delta) {
        return emit(delta, true);
    }

    /**
     * As {@link #emit(String)}; with {@code mayStop} false a stop string completed by this delta does
     * not stop (min_tokens not reached yet), but a possible start of one is still held back.
     */
    public String emit(String delta, boolean mayStop) {
        if (matched != null) return "";
        if (stops.isEmpty()) return delta;
        int before = held.length();
        held.append(delta);
        String text = held.toString();
        if (mayStop) {
            int bestStart = -1, bestEnd = Integer.MAX_VALUE;
            String best = null;
            for (String s : stops) {
                // only matches that end inside the new delta: earlier ones were already ruled out
                int start = text.indexOf(s, Math.max(0, before - s.length() + 1));
                if (start < 0) continue;
                int end = start + s.length();
                if (end < bestEnd || (end == bestEnd && start < bestStart)) {
                    best = s;
                    bestStart = start;
                    bestEnd = end;
                }
            }
            if (best != null) {
                matched = best;
                held.setLength(0);
                return text.substring(0, includeStop ? bestEnd : bestStart);
            }
        }
        int keep = pendingPrefixLength(text);
        held.delete(0, text.length() - keep);
        return text.substring(0, text.length() - keep);
    }

    /** Releases the held-back text: the output ended without completing a stop string. */
    public String flush() {
        if (matched != null) return "";
        String out = held.toString();
        held.setLength(0);
        return out;
    }

    /** The stop string that ended the text, or null. */
    public String matched() {
        return matched;
    }

    /** Length of the longest suffix of {@code text} that is a proper prefix of some stop string. */
    private int pendingPrefixLength(String text) {
        for (int len = Math.min(text.length(), longest - 1); len > 0; len--) {
            int from = text.length() - len;
            for (String s : stops) {
                if (s.length() > len && text.regionMatches(from, s, 0, len)) return len;
            }
        }
        return 0;
    }
}
