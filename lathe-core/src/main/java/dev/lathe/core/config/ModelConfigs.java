package dev.lathe.core.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lathe.core.checkpoint.DType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;

/**
 * Reads HF {@code config.json} into a {@link ModelConfig}, applying the defaults of the transformers
 * config class named by {@code architectures[0]} (see {@link Architecture}) and validating the shape.
 * Both the classic format ({@code rope_theta}, {@code rope_scaling}, {@code torch_dtype}) and the
 * transformers 5 format ({@code rope_parameters}, {@code dtype}) are read.
 */
public final class ModelConfigs {
    private static final ObjectMapper JSON = new ObjectMapper();

    private ModelConfigs() {}

    /** Reads {@code dir/config.json}. */
    public static ModelConfig load(Path dir) {
        Path file = dir.resolve("config.json");
        String text;
        try {
            text = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw new ConfigException(file + ": no such file; a Hugging Face model directory needs its config.json", e);
        } catch (IOException e) {
            throw new ConfigException(file + ": cannot be read (" + e.getMessage() + ")", e);
        }
        return parse(text, file.toString());
    }

    public static ModelConfig parse(String json, String sourceName) {
        try {
            return parse(JSON.readTree(json), sourceName);
        } catch (JsonProcessingException e) {
            throw new ConfigException(sourceName + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        }
    }

    public static ModelConfig parse(JsonNode root, String sourceName) {
        if (root == null || !root.isObject()) throw new ConfigException(sourceName + ": not a JSON object");
        ConfigFields f = new ConfigFields(root, sourceName);
        Architecture arch = architecture(f);

        int vocab = positive(f, "vocab_size", f.intOr("vocab_size", arch.vocabSize));
        int hidden = positive(f, "hidden_size", f.intOr("hidden_size", arch.hiddenSize));
        int intermediate = positive(f, "intermediate_size", f.intOr("intermediate_size", arch.intermediateSize));
        int layers = positive(f, "num_hidden_layers", f.intOr("num_hidden_layers", arch.numLayers));
        int heads = positive(f, "num_attention_heads", f.intOr("num_attention_heads", arch.numHeads));
        Integer kvMissing = arch.kvHeadsIfMissing == null ? heads : arch.kvHeadsIfMissing;
        int kvHeads = positive(f, "num_key_value_heads", f.intOr("num_key_value_heads", kvMissing, heads));
        if (heads % kvHeads != 0) {
            throw f.error("num_key_value_heads", "(" + kvHeads + ") must divide num_attention_heads (" + heads + ")");
        }
        boolean derivedHeadDim = f.isMissingOrNull("head_dim") && (arch.headDimIfMissing == null || f.isNull("head_dim"));
        if ((derivedHeadDim || arch == Architecture.LLAMA) && hidden % heads != 0) {
            throw f.error("hidden_size", "(" + hidden + ") must be divisible by num_attention_heads (" + heads + ")");
        }
        Integer headDimMissing = arch.headDimIfMissing == null ? hidden / heads : arch.headDimIfMissing;
        int headDim = positive(f, "head_dim", f.intOr("head_dim", headDimMissing, hidden / heads));
        if (headDim % 2 != 0) throw f.error("head_dim", "(" + headDim + ") must be even for rotary embeddings");
        int maxPositions = positive(f, "max_position_embeddings",
                f.intOr("max_position_embeddings", arch.maxPositionEmbeddings));
        double eps = f.doubleOr("rms_norm_eps", arch.rmsNormEps);
        if (!(eps > 0)) throw f.error("rms_norm_eps", "must be positive, got " + eps);
        String act = f.textOr("hidden_act", "silu");
        if (!act.equals("silu")) throw f.error("hidden_act", "is '" + act + "'; Lathe supports 'silu' only");

        RopeParameters rope = RopeParameters.parse(f, maxPositions);
        boolean attentionBias = arch.qkvBias || (arch.readsAttentionBias && f.boolOr("attention_bias", false));
        boolean mlpBias = arch.readsMlpBias && f.boolOr("mlp_bias", false);
        int window = slidingWindow(f, arch, layers);
        Integer bos = f.intOr("bos_token_id", arch.bosTokenId, null);
        List<Integer> eos = f.isMissing("eos_token_id") ? arch.eosTokenIds : f.intList("eos_token_id");

        return new ModelConfig(arch.hfName, f.textOr("model_type", arch.modelType), vocab, hidden, intermediate,
                layers, heads, kvHeads, headDim, maxPositions, eps, rope.theta(), rope.scaling(),
                f.boolOr("tie_word_embeddings", false), attentionBias, mlpBias, arch.qkNorm, window, bos, eos,
                dtype(f));
    }

    private static Architecture architecture(ConfigFields f) {
        JsonNode archs = f.node().get("architectures");
        String supported = String.join(", ", Architecture.supported());
        if (archs == null || !archs.isArray() || archs.isEmpty() || !archs.get(0).isTextual()) {
            throw f.error("architectures", "must be a list naming the model class, e.g. [\"LlamaForCausalLM\"]"
                    + " (supported: " + supported + ")");
        }
        String name = archs.get(0).asText();
        Architecture arch = Architecture.of(name);
        if (arch == null) {
            throw f.error("architectures", "names '" + name + "', which Lathe does not support (supported: "
                    + supported + ")");
        }
        return arch;
    }

    /** The attention window in tokens, 0 when every layer attends to the whole context. */
    private static int slidingWindow(ConfigFields f, Architecture arch, int layers) {
        return switch (arch.sliding) {
            case NONE -> 0;
            case MISTRAL -> nonNegative(f, "sliding_window", f.intOr("sliding_window", 4096, 0));
            case QWEN -> qwenSlidingWindow(f, layers);
        };
    }

    // Qwen2/Qwen3: sliding_window only counts when use_sliding_window is true, and then only for layers
    // at or after max_window_layers (or those layer_types marks "sliding_attention"). Lathe has one window
    // for all layers, so a mix of sliding and full layers is refused.
    private static int qwenSlidingWindow(ConfigFields f, int layers) {
        int window = f.boolOr("use_sliding_window", false)
                ? nonNegative(f, "sliding_window", f.intOr("sliding_window", 4096, 0)) : 0;
        JsonNode types = f.node().get("layer_types");
        int sliding;
        if (types != null && !types.isNull()) {
            if (!types.isArray() || types.size() != layers) {
                throw f.error("layer_types", "must list one type per layer (" + layers + "), got " + types);
            }
            sliding = 0;
            for (JsonNode t : types) {
                String s = t.asText();
                if (s.equals("sliding_attention")) sliding++;
                else if (!s.equals("full_attention")) {
                    throw f.error("layer_types", "contains '" + s + "' (supported: full_attention, sliding_attention)");
                }
            }
            if (sliding > 0 && window == 0) {
                throw f.error("layer_types", "marks sliding_attention layers, but use_sliding_window/sliding_window"
                        + " give no window");
            }
        } else {
            int first = f.intOr("max_window_layers", 28);
            sliding = window == 0 ? 0 : Math.max(0, layers - Math.max(0, first));
        }
        if (sliding == 0) return 0;
        if (sliding == layers) return window;
        throw f.error("use_sliding_window", "makes " + sliding + " of " + layers + " layers use a sliding window"
                + " and the rest full attention; Lathe supports one attention kind for all layers");
    }

    /** transformers 5 writes {@code dtype}; older files {@code torch_dtype}. Null when neither is set. */
    private static String dtype(ConfigFields f) {
        String field = !f.isMissingOrNull("dtype") ? "dtype" : "torch_dtype";
        String name = f.textOr(field, null);
        if (name == null) return null;
        try {
            return switch (DType.fromTorch(name)) {
                case BF16 -> "bfloat16";
                case F16 -> "float16";
                default -> "float32";
            };
        } catch (IllegalArgumentException e) {
            throw f.error(field, "is '" + name + "' (supported: bfloat16, float16, float32)");
        }
    }

    private static int positive(ConfigFields f, String field, int value) {
        if (value <= 0) throw f.error(field, "must be positive, got " + value);
        return value;
    }

    private static int nonNegative(ConfigFields f, String field, int value) {
        if (value < 0) throw f.error(field, "must not be negative, got " + value);
        return value;
    }
}
