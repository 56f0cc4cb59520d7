package dev.lathe.core.tokenizer;

import java.util.Arrays;

/**
 * Turns generated token ids into text deltas for streaming, one token at a time.
 *
 * <p>Algorithm (prefix offset / read offset, as in HF text-generation-inference and vLLM): keep all
 * ids, and two offsets into them. {@code [prefixOffset, readOffset)} is a short window of tokens
 * whose text was already emitted; it is decoded again only as context, because a token's text can
 * depend on its neighbours (byte-level BPE joins bytes across tokens, SentencePiece decoders strip a
 * leading space at the start of a decode). On each new token, decode {@code [prefixOffset, end)}; if
 * it is longer than the window's own text and does not end in U+FFFD (a multi-byte character still
 * missing bytes), emit the surplus and slide the window: {@code prefixOffset = readOffset,
 * readOffset = end}. Otherwise emit nothing and wait for more tokens.
 *
 * <p>Each step decodes two short windows, not the whole output. For decoders that concatenate
 * token texts (byte-level BPE: Llama 3, Qwen, GPT-2) the concatenated deltas plus {@link #flush()}
 * equal {@code decode(generatedIds)}; the prompt supplies the first window, so a SentencePiece
 * model's first output token keeps its leading space, as it would inside the full text.
 *
 * <p>Not thread safe: one per sequence, fed by the thread that owns it.
 */
public final class IncrementalDetokenizer {

    /** Prompt tokens kept as context for the first generated token. */
    static final int INITIAL_CONTEXT_TOKENS = 5;

    private final Tokenizer tokenizer;
    private final boolean skipSpecialTokens;
    private int[] ids;        // prompt context tail + generated ids; [0, size) used
    private int size;
    private int prefixOffset; // start of the context window (already emitted text)
    private int readOffset;   // end of the emitted text; tokens from here on are not yet emitted

    public IncrementalDetokenizer(Tokenizer tokenizer, int[] promptIds, boolean skipSpecialTokens) {
        this.tokenizer = tokenizer;
        this.skipSpecialTokens = skipSpecialTokens;
        int context = Math.min(promptIds.length, INITIAL_CONTEXT_TOKENS);
        this.ids = Arrays.copyOfRange(promptIds, promptIds.length - context, promptIds.length + 16);
        this.size = context;
        this.prefixOffset = 0;
        this.readOffset = context;
    }

    /** Appends one generated token; returns the text it completes, possibly empty. */
    public String add(int tokenId) {
        if (size == ids.length) {
            ids = Arrays.copyOf(ids, ids.length * 2);
        }
        ids[size++] = tokenId;
        String prefixText = tokenizer.decode(ids, prefixOffset, readOffset, skipSpecialTokens);
        String newText = tokenizer.decode(ids, prefixOffset, size, skipSpecialTokens);
        if (newText.length() <= prefixText.length() || newText.endsWith("\uFFFD")) {
            return "";
        }
        String delta = newText.substring(prefixText.length());
        prefixOffset = readOffset;
        readOffset = size;
        compact();
        return delta;
    }

    /**
     * The text of tokens held back so far (an incomplete character at the end of generation comes
     * out as U+FFFD, as a full decode would show it). Later {@link #add} calls continue from here.
     */
    public String flush() {
        String prefixText = tokenizer.decode(ids, prefixOffset, readOffset, skipSpecialTokens);
        String newText = tokenizer.decode(ids, prefixOffset, size, skipSpecialTokens);
        if (newText.length() <= prefixText.length()) {
            return "";
        }
        prefixOffset = readOffset;
        readOffset = size;
        compact();
        return newText.substring(prefixText.length());
    }

    /** Drops ids before the window so memory stays bounded by the window, not the output length. */
    private void compact() {
        if (prefixOffset > 1024) {
            int shift = prefixOffset;
            System.arraycopy(ids, shift, ids, 0, size - shift);
            size -= shift;
            prefixOffset -= shift;
            readOffset -= shift;
        }
    }
}
