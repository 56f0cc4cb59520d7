package dev.lathe.server.bench;

import java.util.List;
import java.util.Locale;

/**
 * A self-contained HTML page with an SVG chart of latency against output throughput, one point per
 * benchmark run (e.g. one per concurrency of a sweep): the p50 and p99 TPOT, with a table of every figure.
 */
public final class LatencyChart {
    private static final int W = 720, H = 420, L = 70, R = 20, T = 40, B = 60;

    private LatencyChart() {}

    public static String html(String title, List<ServingBenchmark.Report> reports) {
        double maxX = 1, maxY = 1;
        for (var r : reports) {
            maxX = Math.max(maxX, r.outputThroughput());
            maxY = Math.max(maxY, r.tpotMs().p99());
        }
        var svg = new StringBuilder();
        svg.append(String.format(Locale.ROOT, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>", W, H));
        svg.append(String.format(Locale.ROOT, "<text x='%d' y='20' font-size='15'>%s</text>", L, escape(title)));
        svg.append(String.format(Locale.ROOT, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>", L, H - B, W - R, H - B));
        svg.append(String.format(Locale.ROOT, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>", L, T, L, H - B));
        for (int i = 0; i <= 4; i++) {
            double fx = maxX * i / 4, fy = maxY * i / 4;
            svg.append(String.format(Locale.ROOT, "<text x='%.1f' y='%d' text-anchor='middle'>%.0f</text>", x(fx, maxX), H - B + 16, fx));
            svg.append(String.format(Locale.ROOT, "<text x='%d' y='%.1f' text-anchor='end'>%.1f</text>", L - 6, y(fy, maxY) + 4, fy));
        }
        svg.append(String.format(Locale.ROOT, "<text x='%d' y='%d' text-anchor='middle'>output throughput (tok/s)</text>", (L + W - R) / 2, H - 20));
        svg.append(String.format(Locale.ROOT, "<text x='16' y='%d' transform='rotate(-90 16 %d)' text-anchor='middle'>TPOT (ms)</text>", (T + H - B) / 2, (T + H - B) / 2));
        series(svg, reports, maxX, maxY, "#1f77b4", true);
        series(svg, reports, maxX, maxY, "#d62728", false);
        svg.append(String.format(Locale.ROOT, "<text x='%d' y='%d' fill='#1f77b4'>p50 TPOT</text>", W - R - 160, T + 10));
        svg.append(String.format(Locale.ROOT, "<text x='%d' y='%d' fill='#d62728'>p99 TPOT</text>", W - R - 160, T + 26));
        svg.append("</svg>");
        var table = new StringBuilder("<table border='1' cellpadding='4'><tr><th>concurrency</th><th>rate</th>"
                + "<th>output tok/s</th><th>req/s</th><th>goodput</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th>"
                + "<th>TPOT p50 ms</th><th>TPOT p99 ms</th><th>E2E p50 ms</th><th>failed</th></tr>");
        for (var r : reports) {
            table.append(String.format(Locale.ROOT, "<tr><td>%d</td><td>%s</td><td>%.1f</td><td>%.2f</td><td>%.2f</td>"
                            + "<td>%.1f</td><td>%.1f</td><td>%.2f</td><td>%.2f</td><td>%.1f</td><td>%d</td></tr>",
                    r.config().concurrency(), Double.isInfinite(r.config().requestRate()) ? "inf"
                            : String.format(Locale.ROOT, "%.2f", r.config().requestRate()),
                    r.outputThroughput(), r.requestThroughput(), r.goodput(), r.ttftMs().p50(), r.ttftMs().p99(),
                    r.tpotMs().p50(), r.tpotMs().p99(), r.e2eMs().p50(), r.failed()));
        }
        table.append("</table>");
        return "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + escape(title) + "</title></head><body>"
                + svg + table + "</body></html>\n";
    }

    private static void series(StringBuilder svg, List<ServingBenchmark.Report> reports, double maxX, double maxY,
                               String color, boolean p50) {
        var points = new StringBuilder();
        for (var r : reports) {
            double px = x(r.outputThroughput(), maxX), py = y(p50 ? r.tpotMs().p50() : r.tpotMs().p99(), maxY);
            points.append(String.format(Locale.ROOT, "%.1f,%.1f ", px, py));
            svg.append(String.format(Locale.ROOT, "<circle cx='%.1f' cy='%.1f' r='4' fill='%s'><title>concurrency %d</title></circle>",
                    px, py, color, r.config().concurrency()));
        }
        svg.append(String.format(Locale.ROOT, "<polyline points='%s' fill='none' stroke='%s'/>", points.toString().strip(), color));
    }

    private static double x(double v, double max) { return L + (W - L - R) * v / max; }

    private static double y(double v, double max) { return H - B - (H - T - B) * v / max; }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;");
    }
}
