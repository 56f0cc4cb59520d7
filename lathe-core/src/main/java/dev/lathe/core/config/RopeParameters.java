package dev.lathe.core.config;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * RoPE settings read from either config format:
 * <ul>
 *   <li>classic (transformers 4): top-level {@code rope_theta} plus an optional {@code rope_scaling}
 *       object whose type is under {@code "rope_type"} or the older {@code "type"};</li>
 *   <li>transformers 5: one {@code rope_parameters} object holding {@code rope_type}, {@code rope_theta}
 *       and the scaling fields, possibly nested per layer type ({@code {"full_attention": {...}}}).</li>
 * </ul>
 * Precedence follows transformers 5: a non-null {@code rope_scaling} wins over {@code rope_parameters};
 * theta comes from the object, else the top-level {@code rope_theta}, else 10000.
 */
record RopeParameters(double theta, RopeScaling scaling) {
    static final double DEFAULT_THETA = 10_000.0;
    static final List<String> SUPPORTED = List.of("default", "linear", "dynamic", "llama3");
    private static final Set<String> LAYER_TYPES = Set.of("full_attention", "sliding_attention", "chunked_attention");

    static RopeParameters parse(ConfigFields f, int maxPositionEmbeddings) {
        String key = !f.isMissingOrNull("rope_scaling") ? "rope_scaling"
                : !f.isMissingOrNull("rope_parameters") ? "rope_parameters" : null;
        double topTheta = f.doubleOr("rope_theta", DEFAULT_THETA);
        checkPartialRotary(f);
        if (key == null) return positive(f, "rope_theta", new RopeParameters(topTheta, RopeScaling.NONE));

        ConfigFields p = perLayer(f, key);
        checkPartialRotary(p);
        double theta = p.doubleOr("rope_theta", topTheta);
        String type = p.textOr("rope_type", p.textOr("type", "default"));
        RopeScaling scaling = switch (type) {
            case "default" -> RopeScaling.NONE;
            case "linear" -> new RopeScaling(RopeScaling.Type.LINEAR, factor(p), 0, 0, 0);
            case "dynamic" -> new RopeScaling(RopeScaling.Type.DYNAMIC, factor(p), 0, 0,
                    p.intOr("original_max_position_embeddings", 0));
            case "llama3" -> llama3(f, p, maxPositionEmbeddings);
            default -> throw p.error("rope_type", "is '" + type + "', which Lathe does not support (supported: "
                    + String.join(", ", SUPPORTED) + ")");
        };
        return positive(p, "rope_theta", new RopeParameters(theta, scaling));
    }

    /** The rope object, unwrapping a per-layer-type map whose entries are all equal. */
    private static ConfigFields perLayer(ConfigFields f, String key) {
        ConfigFields p = f.child(key);
        List<String> names = new ArrayList<>();
        p.node().fieldNames().forEachRemaining(names::add);
        if (names.isEmpty() || !LAYER_TYPES.containsAll(names)) return p;
        JsonNode first = p.node().get(names.getFirst());
        for (Map.Entry<String, JsonNode> e : p.node().properties()) {
            if (!e.getValue().equals(first)) {
                throw f.error(key, "gives different RoPE parameters per layer type (" + String.join(", ", names)
                        + "); Lathe supports one RoPE setting for all layers");
            }
        }
        return p.child(names.getFirst());
    }

    private static RopeScaling llama3(ConfigFields top, ConfigFields p, int maxPositionEmbeddings) {
        double factor = factor(p);
        double low = required(p, "low_freq_factor");
        double high = required(p, "high_freq_factor");
        if (high <= low) {
            throw p.error("high_freq_factor", "(" + high + ") must be greater than low_freq_factor (" + low + ")");
        }
        // transformers 5: a top-level original_max_position_embeddings wins, then the rope object's,
        // then max_position_embeddings.
        int original = top.intOr("original_max_position_embeddings",
                p.intOr("original_max_position_embeddings", maxPositionEmbeddings));
        if (original <= 0) throw p.error("original_max_position_embeddings", "must be positive, got " + original);
        return new RopeScaling(RopeScaling.Type.LLAMA3, factor, low, high, original);
    }

    private static double factor(ConfigFields p) {
        double factor = required(p, "factor");
        if (factor < 1.0) throw p.error("factor", "must be at least 1, got " + factor);
        return factor;
    }

    private static double required(ConfigFields p, String field) {
        if (p.isMissingOrNull(field)) throw p.error(field, "is required for this rope_type but missing");
        return p.doubleOr(field, 0);
    }

    private static void checkPartialRotary(ConfigFields f) {
        double partial = f.doubleOr("partial_rotary_factor", 1.0);
        if (partial != 1.0) {
            throw f.error("partial_rotary_factor", "is " + partial + "; Lathe rotates whole heads only (1.0)");
        }
    }

    private static RopeParameters positive(ConfigFields f, String field, RopeParameters r) {
        if (!(r.theta > 0)) throw f.error(field, "must be positive, got " + r.theta);
        return r;
    }
}
