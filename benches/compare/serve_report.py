"""Tables from the network load generator's JSON reports (examples/oip_load --json), for
serve_anchors.sh: capacity per server and protocol with its ratio to each anchor, the open-loop
sweeps, and p99 at the rates the anchors sustain, side by side.

Usage: serve_report.py OUT_DIR   (reads OUT_DIR/*.json, prints Markdown)
"""

import glob
import json
import os
import sys


def load(out_dir):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        with open(path) as f:
            report = json.load(f)
        runs[os.path.basename(path)[:-5]] = report
    return runs


def lost(r):
    return r["unsent"] + r["transport_errors"] + r["client_timeouts"]


def other(r):
    return sum(r["other_status"].values()) + r["bad_answer"]


def ms(us):
    return f"{us / 1000:.2f}"


def capacity_table(runs, anchors):
    rows = ["| server | protocol | capacity req/s | p50 ms | p99 ms | "
            + " | ".join(f"× {a}" for a in anchors) + " |",
            "|---|---|---:|---:|---:|" + "---:|" * len(anchors)]
    # An anchor's best capacity over the protocols it was loaded with.
    anchor_cap = {}
    for report in runs.values():
        if report["server"] in anchors and report["capacity"] is not None:
            cap = report["capacity"]["goodput_rps"]
            anchor_cap[report["server"]] = max(cap, anchor_cap.get(report["server"], 0))
    for name, report in runs.items():
        if not name.endswith("-sweep") or report["capacity"] is None:
            continue
        cap = report["capacity"]
        ratios = [f"{cap['goodput_rps'] / anchor_cap[a]:.1f}" if a in anchor_cap else "-"
                  for a in anchors]
        rows.append(f"| {report['server']} | {report['protocol']} | {cap['goodput_rps']:.0f} | "
                    f"{ms(cap['latency_ok_us']['p50'])} | {ms(cap['latency_ok_us']['p99'])} | "
                    + " | ".join(ratios) + " |")
    return "\n".join(rows)


def sweep_table(runs):
    rows = ["| server | protocol | load | offered/s | goodput/s | 200 | 503 | 504 | other | lost "
            "| p50 ms | p99 ms | p99.9 ms | max send lag ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    checks = []
    for name, report in runs.items():
        if not name.endswith("-sweep"):
            continue
        for r in report["runs"]:
            lat = r["latency_ok_us"]
            rows.append(
                f"| {r['server']} | {r['protocol']} | {r['load']:.2f} | {r['offered_rps']:.0f} | "
                f"{r['goodput_rps']:.0f} | {r['ok']} | {r['status_503']} | {r['status_504']} | "
                f"{other(r)} | {lost(r)} | {ms(lat['p50'])} | {ms(lat['p99'])} | "
                f"{ms(lat['p99_9'])} | {ms(r['send_lag_us']['max'])} |")
        c = report["checks"]
        checks.append(f"- {report['server']} {report['protocol']}: only 200/503/504 "
                      f"{'yes' if c['only_200_503_504'] else 'NO'}, every request answered "
                      f"{'yes' if c['every_request_answered'] else 'NO'}, goodput at the highest "
                      f"load / capacity {c['goodput_at_highest_load_over_capacity']}")
    return "\n".join(rows) + "\n\n" + "\n".join(checks)


def same_rate_table(runs, anchors):
    """p99 of every server at each rate an anchor sustained in its sweep (goodput ≥ 99 % of
    the offered rate, nothing but 200s)."""
    by_rate = {}
    for sweep in runs.values():
        if sweep["server"] not in anchors or sweep["capacity"] is None:
            continue
        a = sweep["server"]
        for r in sweep["runs"]:
            if r["ok"] == r["scheduled"] and r["goodput_rps"] >= 0.99 * r["offered_rps"]:
                by_rate.setdefault(round(r["offered_rps"]), {})[f"{a} {r['protocol']}"] = r
    for name, report in runs.items():
        if name.endswith("-rates"):
            for r in report["runs"]:
                key = round(r["offered_rps"])
                if key in by_rate:
                    by_rate[key][f"{report['server']} {report['protocol']}"] = r
    columns = sorted({c for cells in by_rate.values() for c in cells})
    rows = ["| offered req/s | " + " | ".join(f"{c} p50 / p99 ms" for c in columns) + " |",
            "|---:|" + "---|" * len(columns)]
    for rate in sorted(by_rate):
        cells = []
        for c in columns:
            r = by_rate[rate].get(c)
            cells.append("-" if r is None else
                         f"{ms(r['latency_ok_us']['p50'])} / {ms(r['latency_ok_us']['p99'])}"
                         + ("" if r["ok"] == r["scheduled"] else f" ({r['ok']}/{r['scheduled']} ok)"))
        rows.append(f"| {rate} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    out_dir = sys.argv[1]
    runs = load(out_dir)
    anchors = sorted({r["server"] for r in runs.values() if r["server"] != "densebatch"})
    print("### Capacity (closed loop)\n")
    print(capacity_table(runs, anchors))
    print("\n### Open-loop sweeps (latency of the 200s from their scheduled send time)\n")
    print(sweep_table(runs))
    print("\n### At the rates the anchors sustain\n")
    print(same_rate_table(runs, anchors))


if __name__ == "__main__":
    main()
