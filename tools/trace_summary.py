#!/usr/bin/env python3
"""Per-step summary of an Nsight Systems trace of `lathe bench latency` (exported with `nsys export --type sqlite`).

A step runs from one cuStreamSynchronize to the next (each prefill of the bench ends with one). For the last STEPS
steps: the host time from the first upload or launch to the first kernel, the device span, the device idle inside it
(gaps between kernels, copies and memsets), the memsets, and the largest gaps with the operations on either side.
Then the kernels of the whole run by total time.

    python3 tools/trace_summary.py TRACE.sqlite [STEPS]
"""
import sqlite3
import sys
from collections import Counter


def summarise(path, steps=8, gaps_shown=4):
    c = sqlite3.connect(path)
    names = dict(c.execute("select id, value from StringIds"))
    api = c.execute("select start, end, nameId from CUPTI_ACTIVITY_KIND_RUNTIME order by start").fetchall()
    kernels = c.execute("select start, end, shortName from CUPTI_ACTIVITY_KIND_KERNEL order by start").fetchall()

    def table(name, query):
        try:
            return c.execute(query).fetchall()
        except sqlite3.OperationalError:  # a trace with none has no such table
            return []

    memsets = table("memset", "select start, end from CUPTI_ACTIVITY_KIND_MEMSET order by start")
    copies = table("memcpy", "select start, end, bytes from CUPTI_ACTIVITY_KIND_MEMCPY order by start")
    syncs = [r for r in api if names[r[2]].startswith("cuStreamSynchronize")]
    lines = []
    for i in range(max(1, len(syncs) - steps - 1), len(syncs) - 1):
        t0, t1 = syncs[i - 1][1], syncs[i][1]
        ops = sorted([(k[0], k[1], names[k[2]]) for k in kernels if t0 <= k[0] < t1]
                     + [(m[0], m[1], "memset") for m in memsets if t0 <= m[0] < t1]
                     + [(m[0], m[1], "copy %d B" % m[2]) for m in copies if t0 <= m[0] < t1])
        calls = [r[0] for r in api if t0 <= r[0] < syncs[i][0] and ("Memcpy" in names[r[2]] or "Launch" in names[r[2]])]
        first_kernel = [o for o in ops if not o[2].startswith(("memset", "copy"))]
        if not ops or not calls or not first_kernel:
            continue
        busy = sum(o[1] - o[0] for o in ops)
        span = ops[-1][1] - ops[0][0]
        gaps = sorted((((b[0] - a[1]) / 1e3, a[2][:28], b[2][:28], (a[1] - ops[0][0]) / 1e3) for a, b in zip(ops, ops[1:])),
                      reverse=True)[:gaps_shown]
        lines.append("step %.2f ms: first upload/launch -> first kernel %.0f us, device span %.2f ms, idle inside it %.0f us,"
                     " memsets %d; largest gaps: %s" % (
                         (t1 - t0) / 1e6, (first_kernel[0][0] - min(calls)) / 1e3, span / 1e6, (span - busy) / 1e3,
                         sum(1 for o in ops if o[2] == "memset"),
                         "; ".join("%.0f us %s -> %s at %.0f us" % g for g in gaps)))
    count, total = Counter(), Counter()
    for k in kernels:
        count[names[k[2]]] += 1
        total[names[k[2]]] += k[1] - k[0]
    lines.append("kernels of the whole run (warm-ups included), by total time:")
    for name, t in total.most_common(10):
        lines.append("  %-60s %6d launches, mean %8.1f us" % (name[:60], count[name], t / count[name] / 1e3))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8))
