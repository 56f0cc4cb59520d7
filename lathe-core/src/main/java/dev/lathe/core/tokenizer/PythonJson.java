package dev.lathe.core.tokenizer;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.Map;

/**
 * JSON text the way Python's {@code json.dumps(value, ensure_ascii=False, indent=indent)} writes it,
 * which is what HF's {@code tojson} filter produces: {@code ", "} and {@code ": "} separators on
 * one line, or one item per line indented by {@code indent} spaces (then {@code ","} at line ends);
 * non-ASCII characters kept as they are; keys in insertion order.
 */
final class PythonJson {
    private PythonJson() {
    }

    static String dumps(Object value, Integer indent) {
        StringBuilder out = new StringBuilder();
        write(value, indent, 0, out);
        return out.toString();
    }

    private static void write(Object value, Integer indent, int depth, StringBuilder out) {
        switch (value) {
            case null -> out.append("null");
            case CharSequence s -> writeString(s.toString(), out);
            case Character c -> writeString(c.toString(), out);
            case Boolean b -> out.append(b ? "true" : "false");
            case Integer _, Long _, Short _, Byte _, BigInteger _ -> out.append(value);
            case Double d -> out.append(pythonFloat(d));
            case Float f -> out.append(pythonFloat(f.doubleValue()));
            case BigDecimal d -> out.append(d.toPlainString());
            case Map<?, ?> map -> writeContainer(map.entrySet(), '{', '}', indent, depth, out, true);
            case Iterable<?> items -> writeContainer(items, '[', ']', indent, depth, out, false);
            case Object[] array -> writeContainer(java.util.Arrays.asList(array), '[', ']', indent, depth, out, false);
            default -> writeString(value.toString(), out);
        }
    }

    private static void writeContainer(Iterable<?> items, char open, char close, Integer indent, int depth,
                                       StringBuilder out, boolean isMap) {
        out.append(open);
        boolean first = true;
        for (Object item : items) {
            if (!first) {
                out.append(indent == null ? ", " : ",");
            }
            if (indent != null) {
                out.append('\n').append(" ".repeat(indent * (depth + 1)));
            }
            if (isMap) {
                Map.Entry<?, ?> e = (Map.Entry<?, ?>) item;
                writeString(String.valueOf(e.getKey()), out);
                out.append(": ");
                write(e.getValue(), indent, depth + 1, out);
            } else {
                write(item, indent, depth + 1, out);
            }
            first = false;
        }
        if (!first && indent != null) {
            out.append('\n').append(" ".repeat(indent * depth));
        }
        out.append(close);
    }

    private static void writeString(String s, StringBuilder out) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** Python's repr of a float: "1.0", "0.5", "1e-05", "NaN", "Infinity". */
    private static String pythonFloat(double d) {
        if (Double.isNaN(d)) {
            return "NaN";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "Infinity" : "-Infinity";
        }
        if (d == Math.rint(d) && Math.abs(d) < 1e16) {
            return BigDecimal.valueOf(d).setScale(1, java.math.RoundingMode.UNNECESSARY).toPlainString();
        }
        String s = Double.toString(d);            // shortest repr, like Python's, but "1.0E-5" style
        int e = s.indexOf('E');
        if (e < 0) {
            return s;
        }
        String mantissa = s.substring(0, e);
        if (mantissa.endsWith(".0")) {
            mantissa = mantissa.substring(0, mantissa.length() - 2);
        }
        int exponent = Integer.parseInt(s.substring(e + 1));
        if (exponent >= -4 && exponent < 16) {
            return BigDecimal.valueOf(d).toPlainString();
        }
        return mantissa + "e" + (exponent < 0 ? "-" : "+") + String.format("%02d", Math.abs(exponent));
    }
}
