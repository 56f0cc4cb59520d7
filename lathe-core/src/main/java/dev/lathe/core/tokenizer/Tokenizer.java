package dev.lathe.core.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A Hugging Face tokenizer read from a model directory: {@code tokenizer.json} runs in the HF Rust
 * tokenizers library (through DJL), {@code tokenizer_config.json} supplies the BOS/EOS tokens and
 * the chat template.
 *
 * <p>Special tokens follow HF: {@code encode(text, true)} adds what tokenizer.json's post-processor
 * adds (Llama 3: BOS in front), unless tokenizer_config.json sets {@code add_bos_token}, which
 * LlamaTokenizerFast uses to rebuild that post-processor. A rendered chat prompt already holds its
 * BOS as text, so encode it with {@link #encodeChat}, which adds no special tokens.
 *
 * <p>Thread safety: encode and decode may be called from several threads (the Rust tokenizer is
 * immutable once built); {@link #close()} must not race them.
 */
public final class Tokenizer implements AutoCloseable {

    static {
        // DJL checks for EC2/SageMaker and reports usage over the network unless told not to; an
        // inference engine must not make calls its user did not ask for. Users can still override.
        setIfUnset("OPT_OUT_TRACKING", "OPT_OUT_TRACKING", "true");
        setIfUnset("ai.djl.offline", "DJL_OFFLINE", "true");
    }

    static final String TOKENIZER_FILE = "tokenizer.json";

    private final HuggingFaceTokenizer native_;
    private final Vocabulary vocabulary;
    private final TokenizerConfig config;
    private final Integer bosTokenId;
    private final List<Integer> eosTokenIds;
    private final ChatTemplate chatTemplate;

    private Tokenizer(HuggingFaceTokenizer nativeTokenizer, Vocabulary vocabulary, TokenizerConfig config,
                      Path modelDir) {
        this.native_ = nativeTokenizer;
        this.vocabulary = vocabulary;
        this.config = config;
        this.bosTokenId = config.bosToken() == null ? null : idOfConfigToken(config.bosToken(), "bos_token", modelDir);
        this.eosTokenIds = config.eosToken() == null ? List.of()
                : List.of(idOfConfigToken(config.eosToken(), "eos_token", modelDir));
        this.chatTemplate = config.chatTemplate() == null ? null
                : new ChatTemplate(config.chatTemplate(), config.bosToken(), config.eosToken());
    }

    /**
     * Loads {@code modelDir/tokenizer.json} (required) and {@code tokenizer_config.json},
     * {@code chat_template.jinja} (optional).
     */
    public static Tokenizer load(Path modelDir) {
        Path tokenizerFile = modelDir.resolve(TOKENIZER_FILE);
        if (!Files.isRegularFile(tokenizerFile)) {
            throw new IllegalArgumentException(tokenizerFile + " not found: Lathe needs the fast (Rust) "
                    + "tokenizer file of the model; a checkpoint with only tokenizer.model (SentencePiece) "
                    + "can be converted with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)");
        }
        byte[] json;
        JsonNode root;
        try {
            json = Files.readAllBytes(tokenizerFile);
            root = new ObjectMapper().readTree(json);
        } catch (IOException e) {
            throw new UncheckedIOException(tokenizerFile + ": cannot read or parse: " + e.getMessage(), e);
        }
        Vocabulary vocabulary = Vocabulary.fromTokenizerJson(root, tokenizerFile);
        TokenizerConfig config = TokenizerConfig.read(modelDir);
        HuggingFaceTokenizer nativeTokenizer;
        try {
            // Truncation and padding are the engine's business, never the tokenizer's.
            nativeTokenizer = HuggingFaceTokenizer.newInstance(new ByteArrayInputStream(json),
                    Map.of("truncation", "false", "padding", "false", "addSpecialTokens", "true"));
        } catch (IOException | RuntimeException e) {
            throw new IllegalStateException(tokenizerFile + ": the HF tokenizers library rejected it: "
                    + e.getMessage(), e);
        }
        try {
            return new Tokenizer(nativeTokenizer, vocabulary, config, modelDir);
        } catch (RuntimeException e) {
            nativeTokenizer.close();
            throw e;
        }
    }

    /** Token ids of {@code text}; with {@code addSpecialTokens} the model's BOS etc. as HF adds them. */
    public int[] encode(String text, boolean addSpecialTokens) {
        Objects.requireNonNull(text, "text");
        long[] ids = native_.encode(text, addSpecialTokens, false).getIds();
        int[] out = toInts(ids);
        if (addSpecialTokens && config.addBosToken() != null && bosTokenId != null) {
            boolean startsWithBos = out.length > 0 && out[0] == bosTokenId;
            if (config.addBosToken() && !startsWithBos) {
                int[] withBos = new int[out.length + 1];
                withBos[0] = bosTokenId;
                System.arraycopy(out, 0, withBos, 1, out.length);
                out = withBos;
            } else if (!config.addBosToken() && startsWithBos) {
                out = java.util.Arrays.copyOfRange(out, 1, out.length);
            }
        }
        return out;
    }

    /** Ids of a prompt rendered by the chat template: its special tokens are already in the text. */
    public int[] encodeChat(List<ChatMessage> messages, boolean addGenerationPrompt) {
        ChatTemplate template = chatTemplate().orElseThrow(() -> new IllegalStateException(
                "this model has no chat template (no chat_template in tokenizer_config.json and no "
                        + TokenizerConfig.TEMPLATE_FILE + "); pass a plain prompt instead"));
        return encode(template.render(messages, addGenerationPrompt), false);
    }

    /** Text of {@code ids}; with {@code skipSpecialTokens} the special added tokens are left out. */
    public String decode(int[] ids, boolean skipSpecialTokens) {
        return decode(ids, 0, ids.length, skipSpecialTokens);
    }

    /** Text of {@code ids[from, to)}. */
    public String decode(int[] ids, int from, int to, boolean skipSpecialTokens) {
        Objects.checkFromToIndex(from, to, ids.length);
        long[] window = new long[to - from];
        for (int i = from; i < to; i++) {
            int id = ids[i];
            if (id < 0 || id >= vocabulary.idToToken().length || vocabulary.idToToken()[id] == null) {
                throw new IllegalArgumentException("token id " + id + " at position " + i
                        + " is not in the vocabulary (size " + vocabSize() + ")");
            }
            window[i - from] = id;
        }
        return native_.decode(window, skipSpecialTokens);
    }

    /** Number of id slots: the largest id of the vocabulary or the added tokens, plus one. */
    public int vocabSize() {
        return vocabulary.idToToken().length;
    }

    /** Id of a token string as the vocabulary spells it (byte-level BPE: "Ġthe" for " the"). */
    public OptionalInt tokenId(String token) {
        Integer id = vocabulary.tokenToId().get(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /** The vocabulary's string for {@code id}, e.g. "Ġthe"; not decoded text. */
    public String tokenString(int id) {
        if (id < 0 || id >= vocabulary.idToToken().length || vocabulary.idToToken()[id] == null) {
            throw new IllegalArgumentException("token id " + id + " is not in the vocabulary (size "
                    + vocabSize() + ")");
        }
        return vocabulary.idToToken()[id];
    }

    /** Id of tokenizer_config.json's bos_token, or null when it names none. */
    public Integer bosTokenId() {
        return bosTokenId;
    }

    /** Id of tokenizer_config.json's eos_token; empty when it names none. */
    public List<Integer> eosTokenIds() {
        return eosTokenIds;
    }

    public Optional<ChatTemplate> chatTemplate() {
        return Optional.ofNullable(chatTemplate);
    }

    /** Whether {@code id} is an added token marked special (BOS, EOS, chat markers...). */
    public boolean isSpecial(int id) {
        return id >= 0 && vocabulary.special().get(id);
    }

    @Override
    public void close() {
        native_.close();
    }

    private int idOfConfigToken(String token, String field, Path modelDir) {
        Integer id = vocabulary.tokenToId().get(token);
        if (id == null) {
            throw new IllegalArgumentException(modelDir.resolve(TokenizerConfig.CONFIG_FILE) + ": " + field
                    + " '" + token + "' is not a token of " + modelDir.resolve(TOKENIZER_FILE));
        }
        return id;
    }

    private static int[] toInts(long[] ids) {
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    private static void setIfUnset(String property, String environmentVariable, String value) {
        if (System.getProperty(property) == null && System.getenv(environmentVariable) == null) {
            System.setProperty(property, value);
        }
    }
}
