package dev.lathe.core.checkpoint;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parsed and validated JSON header of a safetensors file.
 *
 * <p>File layout: {@code [u64 little-endian N][N bytes of UTF-8 JSON][data area]}. The JSON maps each
 * tensor name to {@code {"dtype", "shape", "data_offsets": [begin, end)}} with offsets relative to the
 * start of the data area; the optional {@code "__metadata__"} entry maps strings to strings.
 *
 * <p>Invariants after {@link #parse}: every entry's dtype is known, its byte size is
 * {@code numel * dtype size}, its offsets are ordered and non-negative, no two entries overlap, and every
 * entry ends within {@code dataSize} bytes.
 */
record SafetensorsHeader(Map<String, Entry> entries, Map<String, String> metadata) {

    static final String METADATA_KEY = "__metadata__";

    /** One tensor's description; {@code begin}/{@code end} are byte offsets into the data area. */
    record Entry(String name, DType dtype, long[] shape, long begin, long end) {
        long byteSize() { return end - begin; }
    }

    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    /**
     * @param file     the file name used in error messages
     * @param json     the header bytes
     * @param dataSize bytes present after the header
     */
    static SafetensorsHeader parse(String file, byte[] json, long dataSize) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw fail(file, "the header is not valid JSON (" + e.getOriginalMessage() + ")");
        } catch (java.io.IOException e) {
            throw fail(file, "the header could not be read (" + e.getMessage() + ")");
        }
        if (root == null || !root.isObject()) {
            throw fail(file, "the header is not a JSON object");
        }
        Map<String, Entry> entries = new LinkedHashMap<>();
        Map<String, String> metadata = Map.of();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            if (field.getKey().equals(METADATA_KEY)) {
                metadata = parseMetadata(file, field.getValue());
            } else {
                entries.put(field.getKey(), parseEntry(file, field.getKey(), field.getValue()));
            }
        }
        checkLayout(file, entries.values(), dataSize);
        return new SafetensorsHeader(Collections.unmodifiableMap(entries), metadata);
    }

    private static Map<String, String> parseMetadata(String file, JsonNode node) {
        if (!node.isObject()) throw fail(file, "'__metadata__' must be an object of strings");
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            if (!e.getValue().isTextual()) {
                throw fail(file, "'__metadata__' value for '" + e.getKey() + "' is " + e.getValue() + ", not a string");
            }
            out.put(e.getKey(), e.getValue().asText());
        }
        return Collections.unmodifiableMap(out);
    }

    private static Entry parseEntry(String file, String name, JsonNode node) {
        String where = "tensor '" + name + "'";
        if (!node.isObject()) throw fail(file, where + " is described by " + node + ", not an object");
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) throw fail(file, where + " has no string 'dtype'");
        DType dtype;
        try {
            dtype = DType.fromSafetensors(dtypeNode.asText());
        } catch (IllegalArgumentException e) {
            throw fail(file, where + ": " + e.getMessage());
        }
        long[] shape = longs(file, where, "shape", node.get("shape"), -1);
        long[] offsets = longs(file, where, "data_offsets", node.get("data_offsets"), 2);
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end) {
            throw fail(file, where + " has data_offsets [" + begin + ", " + end + "] out of order (begin after end)");
        }
        long numel = 1;
        for (long d : shape) numel = Math.multiplyExact(numel, d);
        long expected = Math.multiplyExact(numel, (long) dtype.byteSize());
        if (end - begin != expected) {
            throw fail(file, where + " is " + dtype + " " + Arrays.toString(shape) + ", which needs " + expected
                    + " bytes, but its data_offsets [" + begin + ", " + end + "] span " + (end - begin) + " bytes");
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    private static long[] longs(String file, String where, String field, JsonNode node, int requiredLength) {
        if (node == null || !node.isArray()) throw fail(file, where + " has no '" + field + "' array");
        if (requiredLength >= 0 && node.size() != requiredLength) {
            throw fail(file, where + " has '" + field + "' " + node + "; expected " + requiredLength + " numbers");
        }
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong()) {
                throw fail(file, where + " has '" + field + "' " + node + " with a non-integer entry");
            }
            out[i] = v.asLong();
            if (out[i] < 0) {
                String what = field.equals("data_offsets") ? " pointing before the start of the data area" : "";
                throw fail(file, where + " has negative '" + field + "' " + node + what);
            }
        }
        return out;
    }

    private static void checkLayout(String file, Iterable<Entry> entries, long dataSize) {
        List<Entry> sorted = new ArrayList<>();
        entries.forEach(sorted::add);
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long describedEnd = 0;
        Entry last = null;
        for (Entry e : sorted) {
            if (last != null && e.begin() < last.end() && e.byteSize() > 0 && last.byteSize() > 0) {
                throw fail(file, "tensors '" + last.name() + "' [" + last.begin() + ", " + last.end() + ") and '"
                        + e.name() + "' [" + e.begin() + ", " + e.end() + ") overlap in the data area");
            }
            if (last == null || e.end() > last.end()) last = e;
            describedEnd = Math.max(describedEnd, e.end());
        }
        if (describedEnd > dataSize && last != null) {
            throw new CheckpointException(file + ": the file is truncated: its header describes " + describedEnd
                    + " bytes of tensor data (tensor '" + last.name() + "' ends at " + last.end() + "), but only "
                    + dataSize + " bytes follow the header; the download or copy was probably interrupted,"
                    + " fetch the file again");
        }
    }

    private static CheckpointException fail(String file, String problem) {
        return new CheckpointException(file + ": " + problem
                + "; the file is not a valid safetensors file, re-create or re-download it");
    }
}
