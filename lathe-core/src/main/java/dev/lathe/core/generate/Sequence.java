package dev.lathe.core.generate;

import java.util.Arrays;

/**
 * A sequence's tokens and where its KV lives. Two counters, no phase: {@code numComputed} tokens are in
 * the cache, {@code numTokens()} exist (prompt + output); a step computes some of the difference.
 */
public final class Sequence {
    private final long id;
    private final int numPromptTokens;
    private int[] tokens;
    private int numTokens;
    private int numComputed;
    private int[] blocks = new int[4];
    private int numBlocks;

    public Sequence(long id, int[] prompt) {
        if (prompt.length == 0) throw new IllegalArgumentException("a sequence needs at least one prompt token");
        this.id = id;
        this.numPromptTokens = prompt.length;
        this.tokens = Arrays.copyOf(prompt, Math.max(16, prompt.length * 2));
        this.numTokens = prompt.length;
    }

    public long id() { return id; }

    public int numPromptTokens() { return numPromptTokens; }

    public int numTokens() { return numTokens; }

    public int numComputed() { return numComputed; }

    public int numOutputTokens() { return numTokens - numPromptTokens; }

    public int token(int i) { return tokens[i]; }

    /** Copies tokens {@code [from, from + count)} into {@code dst} at {@code at}. */
    public void copyTokens(int from, int count, int[] dst, int at) {
        if (from < 0 || count < 0 || from + count > numTokens) {
            throw new IndexOutOfBoundsException("tokens [" + from + ", " + (from + count) + ") of " + numTokens);
        }
        System.arraycopy(tokens, from, dst, at, count);
    }

    public int lastToken() { return tokens[numTokens - 1]; }

    public int[] tokens() { return Arrays.copyOf(tokens, numTokens); }

    public int[] outputTokens() { return Arrays.copyOfRange(tokens, numPromptTokens, numTokens); }

    public void append(int token) {
        if (numTokens == tokens.length) tokens = Arrays.copyOf(tokens, tokens.length * 2);
        tokens[numTokens++] = token;
    }

    /**
     * Replaces output token {@code i} (a placeholder appended before its value was known; see {@code
     * ModelRunner.launch}).
     */
    public void setToken(int i, int token) {
        if (i < numPromptTokens || i >= numTokens) {
            throw new IllegalArgumentException("sequence " + id + ": token " + i + " is not an output token (prompt "
                    + numPromptTokens + ", tokens " + numTokens + ")");
        }
        tokens[i] = token;
    }

    /**
     * Marks the first {@code n} tokens as already in the cache (a prefix-cache hit or blocks shared with
     * another sample): their KV must be in this sequence's blocks.
     */
    public void setComputed(int n) {
        if (n < 0 || n > numTokens) {
            throw new IllegalArgumentException("sequence " + id + ": cannot mark " + n + " of " + numTokens + " tokens computed");
        }
        numComputed = n;
    }

    void advanceComputed(int n) {
        if (numComputed + n > numTokens) throw new IllegalStateException("computed beyond the tokens of sequence " + id);
        numComputed += n;
    }

    public int numBlocks() { return numBlocks; }

    public int block(int i) { return blocks[i]; }

    /** Appends a KV block id (blocks hold tokens {@code [i * blockSize, (i + 1) * blockSize)} in order). */
    public void addBlock(int block) {
        if (numBlocks == blocks.length) blocks = Arrays.copyOf(blocks, blocks.length * 2);
        blocks[numBlocks++] = block;
    }

    int[] takeBlocks() {
        int[] out = Arrays.copyOf(blocks, numBlocks);
        numBlocks = 0;
        numComputed = 0;
        return out;
    }
}
