package dev.lathe.core.tokenizer;

import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.TextStyle;
import java.util.Locale;

/** Python's {@code datetime.strftime} in the C locale, for templates' {@code strftime_now(fmt)}. */
final class PythonStrftime {
    private PythonStrftime() {
    }

    static String format(ZonedDateTime t, String pattern) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < pattern.length(); i++) {
            char c = pattern.charAt(i);
            if (c != '%' || i + 1 == pattern.length()) {
                out.append(c);
                continue;
            }
            char f = pattern.charAt(++i);
            boolean unpadded = false;              // glibc's "%-d": no zero padding
            if (f == '-' && i + 1 < pattern.length()) {
                unpadded = true;
                f = pattern.charAt(++i);
            }
            out.append(switch (f) {
                case 'd' -> pad(t.getDayOfMonth(), 2, unpadded);
                case 'e' -> String.format("%2d", t.getDayOfMonth());
                case 'm' -> pad(t.getMonthValue(), 2, unpadded);
                case 'Y' -> Integer.toString(t.getYear());
                case 'y' -> pad(t.getYear() % 100, 2, unpadded);
                case 'H' -> pad(t.getHour(), 2, unpadded);
                case 'I' -> pad((t.getHour() + 11) % 12 + 1, 2, unpadded);
                case 'M' -> pad(t.getMinute(), 2, unpadded);
                case 'S' -> pad(t.getSecond(), 2, unpadded);
                case 'f' -> String.format("%06d", t.getNano() / 1000);
                case 'j' -> pad(t.getDayOfYear(), 3, unpadded);
                case 'p' -> t.getHour() < 12 ? "AM" : "PM";
                case 'b', 'h' -> t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
                case 'B' -> t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH);
                case 'a' -> t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
                case 'A' -> t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH);
                case 'w' -> Integer.toString(t.getDayOfWeek().getValue() % 7);
                case 'u' -> Integer.toString(t.getDayOfWeek().getValue());
                case 'z' -> DateTimeFormatter.ofPattern("xx", Locale.ENGLISH).format(t);
                case 'Z' -> t.getZone().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
                case 'F' -> format(t, "%Y-%m-%d");
                case 'T' -> format(t, "%H:%M:%S");
                case 'D' -> format(t, "%m/%d/%y");
                case 'c' -> format(t, "%a %b %e %H:%M:%S %Y");
                case 'x' -> format(t, "%m/%d/%y");
                case 'X' -> format(t, "%H:%M:%S");
                case '%' -> "%";
                default -> "%" + (unpadded ? "-" : "") + f;
            });
        }
        return out.toString();
    }

    private static String pad(int value, int width, boolean unpadded) {
        return unpadded ? Integer.toString(value) : String.format("%0" + width + "d", value);
    }
}
