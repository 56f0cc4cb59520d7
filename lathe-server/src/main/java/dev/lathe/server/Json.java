package dev.lathe.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * JSON in and out, and typed reads of request fields: each read either returns a value of the right
 * type or throws a 400 naming the field, the type expected and what was given.
 */
public final class Json {
    public static final ObjectMapper MAPPER = new ObjectMapper();

    private Json() {}

    public static ObjectNode object() { return MAPPER.createObjectNode(); }

    public static ArrayNode array() { return MAPPER.createArrayNode(); }

    public static byte[] bytes(JsonNode node) {
        try {
            return MAPPER.writeValueAsBytes(node);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise a response: " + e.getMessage(), e);
        }
    }

    /** Parses a request body: strict UTF-8, then one JSON object. */
    public static ObjectNode parseObject(byte[] body) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(body)).toString();
        } catch (CharacterCodingException e) {
            throw ApiException.badRequest("The request body is not valid UTF-8 (" + e.getMessage()
                    + "); send JSON encoded as UTF-8.", null, "invalid_encoding");
        }
        if (text.isBlank()) {
            throw ApiException.badRequest("The request body is empty; send a JSON object.", null, "invalid_json");
        }
        JsonNode node;
        try {
            node = MAPPER.readTree(text);
        } catch (JsonProcessingException e) {
            throw ApiException.badRequest("The request body is not valid JSON: " + e.getOriginalMessage()
                    + " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ").",
                    null, "invalid_json");
        }
        if (node == null || !node.isObject()) {
            throw ApiException.badRequest("The request body must be a JSON object, got " + typeName(node) + ".",
                    null, "invalid_json");
        }
        return (ObjectNode) node;
    }

    static String typeName(JsonNode n) {
        if (n == null || n.isMissingNode()) return "nothing";
        if (n.isNull()) return "null";
        if (n.isTextual()) return "a string";
        if (n.isBoolean()) return "a boolean";
        if (n.isIntegralNumber()) return "an integer";
        if (n.isNumber()) return "a number";
        if (n.isArray()) return "an array";
        return "an object";
    }

    private static ApiException wrongType(String field, String expected, JsonNode got) {
        return ApiException.badRequest("'" + field + "' must be " + expected + ", got " + typeName(got)
                + (got != null && got.isValueNode() && !got.isNull() ? " (" + got + ")" : "") + ".", field);
    }

    /** Absent or null fields read as absent. */
    static boolean present(JsonNode obj, String field) {
        JsonNode n = obj.get(field);
        return n != null && !n.isNull();
    }

    public static String string(JsonNode obj, String field, String dflt) {
        if (!present(obj, field)) return dflt;
        JsonNode n = obj.get(field);
        if (!n.isTextual()) throw wrongType(field, "a string", n);
        return n.asText();
    }

    public static String requiredString(JsonNode obj, String field) {
        String s = string(obj, field, null);
        if (s == null) throw ApiException.badRequest("'" + field + "' is required.", field);
        return s;
    }

    public static Double number(JsonNode obj, String field, Double dflt) {
        if (!present(obj, field)) return dflt;
        JsonNode n = obj.get(field);
        if (!n.isNumber()) throw wrongType(field, "a number", n);
        return n.asDouble();
    }

    public static Integer integer(JsonNode obj, String field, Integer dflt) {
        if (!present(obj, field)) return dflt;
        JsonNode n = obj.get(field);
        if (!n.isIntegralNumber() || !n.canConvertToInt()) {
            // 5.0 is an integer to JSON readers in many languages
            if (n.isNumber() && n.asDouble() == Math.rint(n.asDouble()) && Math.abs(n.asDouble()) < Integer.MAX_VALUE) {
                return (int) n.asDouble();
            }
            throw wrongType(field, "an integer", n);
        }
        return n.asInt();
    }

    public static Long longValue(JsonNode obj, String field, Long dflt) {
        if (!present(obj, field)) return dflt;
        JsonNode n = obj.get(field);
        if (!n.isIntegralNumber() || !n.canConvertToLong()) throw wrongType(field, "an integer", n);
        return n.asLong();
    }

    public static Boolean bool(JsonNode obj, String field, Boolean dflt) {
        if (!present(obj, field)) return dflt;
        JsonNode n = obj.get(field);
        if (!n.isBoolean()) throw wrongType(field, "a boolean", n);
        return n.asBoolean();
    }

    public static ObjectNode objectField(JsonNode obj, String field) {
        if (!present(obj, field)) return null;
        JsonNode n = obj.get(field);
        if (!n.isObject()) throw wrongType(field, "an object", n);
        return (ObjectNode) n;
    }

    public static ArrayNode arrayField(JsonNode obj, String field) {
        if (!present(obj, field)) return null;
        JsonNode n = obj.get(field);
        if (!n.isArray()) throw wrongType(field, "an array", n);
        return (ArrayNode) n;
    }
}
