package dev.lathe.core.tokenizer;

/**
 * Rewrites a template so that Jinjava renders its whitespace as Jinja2 does. Jinjava honours
 * {@code {%- -%}} and {@code trim_blocks}/{@code lstrip_blocks} for statements, but ignores the
 * {@code -} of {@code {{- -}}} and of {@code {#- -#}}, and does not apply trim_blocks/lstrip_blocks
 * to comments. Chat templates lean on all of these, so this pass applies them itself: it strips the
 * whitespace the markers ask for, drops the markers, and removes comments entirely.
 *
 * <p>Tags are scanned with their string literals skipped ({@code {{- "}}" }} occurs in real
 * templates). {@code {% raw %}} blocks are not special-cased.
 */
final class JinjaWhitespace {
    private JinjaWhitespace() {
    }

    static String normalize(String src) {
        StringBuilder out = new StringBuilder(src.length());
        int textStart = 0;     // in out: where the current run of plain text began (after the last tag)
        int i = 0;
        int n = src.length();
        while (i < n) {
            char c = src.charAt(i);
            if (c != '{' || i + 1 >= n || "{%#".indexOf(src.charAt(i + 1)) < 0) {
                out.append(c);
                i++;
                continue;
            }
            char kind = src.charAt(i + 1);
            int end = tagEnd(src, i, kind);
            if (end < 0) {             // unterminated: leave it for Jinjava to report
                out.append(src, i, n);
                break;
            }
            boolean stripBefore = i + 2 < end && src.charAt(i + 2) == '-';
            boolean stripAfter = src.charAt(end - 3) == '-' && end - 3 > i + 1 + (stripBefore ? 1 : 0);
            if (kind == '%') {
                out.append(src, i, end);      // Jinjava handles statement tags itself
                i = end;
                textStart = out.length();
                continue;
            }
            if (stripBefore) {
                trimTrailingWhitespace(out, textStart);
            } else if (kind == '#') {
                lstripBlock(out, textStart);
            }
            if (kind == '{') {
                out.append("{{").append(src, i + (stripBefore ? 3 : 2), end - (stripAfter ? 3 : 2)).append("}}");
            }
            i = end;
            if (stripAfter) {
                while (i < n && Character.isWhitespace(src.charAt(i))) {
                    i++;
                }
            } else if (kind == '#') {         // trim_blocks: one newline after the comment
                if (src.startsWith("\r\n", i)) {
                    i += 2;
                } else if (i < n && src.charAt(i) == '\n') {
                    i++;
                }
            }
            textStart = out.length();
        }
        return out.toString();
    }

    /** Index just past the closing delimiter of the tag opening at {@code start}, or -1. */
    private static int tagEnd(String src, int start, char kind) {
        char close = kind == '{' ? '}' : kind;
        char quote = 0;
        for (int j = start + 2; j < src.length(); j++) {
            char c = src.charAt(j);
            if (kind != '#' && quote != 0) {
                if (c == '\\') {
                    j++;
                } else if (c == quote) {
                    quote = 0;
                }
            } else if (kind != '#' && (c == '"' || c == '\'')) {
                quote = c;
            } else if (c == close && j + 1 < src.length() && src.charAt(j + 1) == '}') {
                return j + 2;
            }
        }
        return -1;
    }

    private static void trimTrailingWhitespace(StringBuilder out, int floor) {
        int len = out.length();
        while (len > floor && Character.isWhitespace(out.charAt(len - 1))) {
            len--;
        }
        out.setLength(len);
    }

    /** lstrip_blocks: drop spaces and tabs between the line start and the tag. */
    private static void lstripBlock(StringBuilder out, int floor) {
        int len = out.length();
        while (len > floor && (out.charAt(len - 1) == ' ' || out.charAt(len - 1) == '\t')) {
            len--;
        }
        if (len == 0 || out.charAt(len - 1) == '\n') {
            out.setLength(len);
        }
    }
}
