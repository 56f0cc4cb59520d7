package dev.lathe.core.config;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.List;

/**
 * Typed reads of one JSON object from a config file. HF configs distinguish a missing field (the class
 * default applies) from an explicit {@code null} (often "derive it"), so both cases are visible here.
 */
record ConfigFields(JsonNode node, String source, String prefix) {

    ConfigFields(JsonNode node, String source) {
        this(node, source, "");
    }

    /** The fields of the object under {@code field}; errors then name {@code field.inner}. */
    ConfigFields child(String field) {
        JsonNode v = node.get(field);
        if (v == null || !v.isObject()) throw error(field, "must be an object, got " + v);
        return new ConfigFields(v, source, prefix + field + ".");
    }

    boolean isMissing(String field) { return !node.has(field); }

    /** Present with the value {@code null}. */
    boolean isNull(String field) { return node.has(field) && node.get(field).isNull(); }

    boolean isMissingOrNull(String field) { return !node.has(field) || node.get(field).isNull(); }

    int intOr(String field, int fallback) {
        return isMissingOrNull(field) ? fallback : integer(field);
    }

    /** The integer, or {@code ifMissing} when absent and {@code ifNull} when {@code null}. */
    Integer intOr(String field, Integer ifMissing, Integer ifNull) {
        if (isMissing(field)) return ifMissing;
        if (isNull(field)) return ifNull;
        return integer(field);
    }

    int integer(String field) {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) throw error(field, "is required but missing");
        if (!v.isIntegralNumber() && !(v.isNumber() && v.asDouble() == Math.rint(v.asDouble()))) {
            throw error(field, "must be an integer, got " + v);
        }
        if (!v.canConvertToInt() && v.isIntegralNumber()) throw error(field, "is out of range: " + v);
        return v.asInt();
    }

    double doubleOr(String field, double fallback) {
        if (isMissingOrNull(field)) return fallback;
        JsonNode v = node.get(field);
        if (!v.isNumber()) throw error(field, "must be a number, got " + v);
        return v.asDouble();
    }

    Double doubleOrNull(String field) {
        return isMissingOrNull(field) ? null : doubleOr(field, 0);
    }

    boolean boolOr(String field, boolean fallback) {
        if (isMissingOrNull(field)) return fallback;
        JsonNode v = node.get(field);
        if (!v.isBoolean()) throw error(field, "must be true or false, got " + v);
        return v.asBoolean();
    }

    Boolean boolOrNull(String field) {
        return isMissingOrNull(field) ? null : boolOr(field, false);
    }

    String textOr(String field, String fallback) {
        if (isMissingOrNull(field)) return fallback;
        JsonNode v = node.get(field);
        if (!v.isTextual()) throw error(field, "must be a string, got " + v);
        return v.asText();
    }

    /** An int or a list of ints ({@code eos_token_id}); empty when missing or null. */
    List<Integer> intList(String field) {
        if (isMissingOrNull(field)) return List.of();
        JsonNode v = node.get(field);
        List<Integer> out = new ArrayList<>();
        if (v.isArray()) {
            for (JsonNode e : v) {
                if (!e.isIntegralNumber()) throw error(field, "must be an integer or a list of integers, got " + v);
                out.add(e.asInt());
            }
        } else if (v.isIntegralNumber()) {
            out.add(v.asInt());
        } else {
            throw error(field, "must be an integer or a list of integers, got " + v);
        }
        return List.copyOf(out);
    }

    ConfigException error(String field, String problem) {
        return new ConfigException(source + ": field '" + prefix + field + "' " + problem);
    }
}
