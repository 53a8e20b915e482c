#!/usr/bin/env python3
"""Turn a comparison run's JSON (run_engines.py --json, or the reference harness's) into the
README's table and an SVG plot of our throughput relative to ONNX Runtime.

Usage:  report.py RUN.json [--svg OUT.svg] [--accuracy ACC.json]      (the table goes to stdout, as markdown)
When the run timed our engine twice (run_engines.py --twin, or the reference harness with a second
external engine named "twin"), the table gets an A/A column, ours/twin: identical engines, so
it shows how far noise alone moved a ratio in that run.
When it timed our engine in bf16 or int8 too (run_engines.py --ours-precisions), a second table
puts each against ours (f32), ONNX Runtime fp32, and the fastest of ONNX Runtime's quantized models
of the same or lower precision in that cell; with --accuracy (quant_accuracy.py --json), each
engine's SQNR against fp32 and argmax agreement stand beside its ratios.
No dependencies beyond the standard library: the SVG is written by hand.
"""
import argparse
import json
import math


def cells(results):
    """(model, batch, threads, ort, ours, twin) for every cell both engines ran; twin is None
    when the run did not time our engine twice."""
    by = {(r["model"], r["batch"], r["engine"], r["threads"]): r for r in results}
    models = list(dict.fromkeys(r["model"] for r in results))
    for model in models:
        for batch in sorted({r["batch"] for r in results if r["model"] == model}):
            for threads in sorted({r["threads"] for r in results}):
                ort = by.get((model, batch, "ort", threads))
                ours = by.get((model, batch, "ours", threads))
                twin = by.get((model, batch, "twin", threads))
                if ort and ours and "samples_per_s" in ort and "samples_per_s" in ours:
                    yield model, batch, threads, ort, ours, twin


def us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"


def table(results):
    has_twin = any(r["engine"] == "twin" for r in results)
    rows = ["| model | batch | threads | ORT p50 / p99 | ours p50 / p99 | ORT GFLOP/s | ours GFLOP/s | ours/ORT |"
            + (" A/A ours/twin |" if has_twin else ""),
            "|---|---:|---:|---|---|---:|---:|---:|" + ("---:|" if has_twin else "")]
    spread = []
    for model, batch, threads, ort, ours, twin in cells(results):
        ratio = ours["samples_per_s"] / ort["samples_per_s"]
        row = (f"| {model} | {batch} | {threads} | {us(ort['median_us'])} / {us(ort['p99_us'])} | "
               f"{us(ours['median_us'])} / {us(ours['p99_us'])} | {ort['gflops']:.1f} | "
               f"{ours['gflops']:.1f} | {ratio:.2f} |")
        if has_twin:
            aa = ours["samples_per_s"] / twin["samples_per_s"] if twin and "samples_per_s" in twin else None
            row += f" {aa:.2f} |" if aa else " - |"
            spread += [aa] if aa else []
        rows.append(row)
    if spread:
        rows += ["", f"A/A: our engine against itself ranged {min(spread):.2f}–{max(spread):.2f} over "
                 f"{len(spread)} cells; an ours/ORT ratio inside that range cannot be told from a tie in this run."]
    return "\n".join(rows)


# Bits per weight: a rival of "same or lower precision" has at most as many.
BITS = {"f32": 32, "bf16": 16, "int8": 8, "int8-full": 8}


def precision_table(results, accuracy=None):
    """ours-bf16, ours-int8 and ours-int8-full against ours, ort and the fastest quantized ORT
    engine of the same or lower precision, per cell; "" when the run timed neither. `accuracy`: quant_accuracy.py's
    JSON, whose SQNR and argmax agreement then follow each engine."""
    by = {(r["model"], r["batch"], r["engine"], r["threads"]): r for r in results if "samples_per_s" in r}
    ours = [e for e in ("ours-bf16", "ours-int8", "ours-int8-full") if any(k[2] == e for k in by)]
    if not ours:
        return ""
    acc = {(a["model"], a["engine"]): a for a in (accuracy or {}).get("results", [])}

    def quality(model, engine):
        a = acc.get((model, engine))
        return f"{a['sqnr_db']:.1f} dB, {a['argmax']:.3f}" if a and "sqnr_db" in a else "-"

    head = ["model", "batch", "threads"]
    for e in ours:
        head += [f"{e}/ours", f"{e}/ort", f"{e}/fastest ORT ≤ {e[5:]}"]
        head += [f"{e} SQNR, argmax", "its SQNR, argmax"] if accuracy else []
    rows = ["| " + " | ".join(head) + " |", "|---|---:|---:|" + "---:|" * (len(head) - 3)]
    for model, batch, threads in dict.fromkeys((k[0], k[1], k[3]) for k in by):
        cells = [model, str(batch), str(threads)]
        for e in ours:
            mine = by.get((model, batch, e, threads))
            rivals = [r for r in results if (r["model"], r["batch"], r["threads"]) == (model, batch, threads)
                      and r["engine"].startswith("ort-") and "samples_per_s" in r
                      and BITS.get(r.get("precision"), 32) <= BITS[e[5:]]]
            best = max(rivals, key=lambda r: r["samples_per_s"], default=None)
            for other in (by.get((model, batch, "ours", threads)), by.get((model, batch, "ort", threads)), best):
                cells.append(f"{mine['samples_per_s'] / other['samples_per_s']:.2f}" if mine and other else "-")
            if best and mine:
                cells[-1] += f" ({best['engine']})"
            if accuracy:
                cells += [quality(model, e), quality(model, best["engine"]) if best else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def svg(results):
    data = [(f"{m} b{b} t{t}", ours["samples_per_s"] / ort["samples_per_s"])
            for m, b, t, ort, ours, _ in cells(results)]
    w, bar, left, top = 760, 14, 170, 30
    h = top + bar * len(data) + 40
    lo, hi = math.log10(0.25), math.log10(64)
    x = lambda r: left + (math.log10(min(max(r, 0.25), 64)) - lo) / (hi - lo) * (w - left - 20)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">',
           f'<text x="{left}" y="16" font-size="12">Throughput relative to ONNX Runtime (log scale; 1 = parity)</text>']
    for tick in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64):
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{h - 36}" '
                   f'stroke="{"#000" if tick == 1 else "#ddd"}"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{h - 24}" text-anchor="middle">{tick:g}</text>')
    for i, (label, ratio) in enumerate(data):
        y = top + i * bar
        colour = "#2a7" if ratio >= 1 else "#c44"
        x0, x1 = sorted((x(1), x(ratio)))
        out.append(f'<text x="{left - 6}" y="{y + bar - 4}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1):.1f}" height="{bar - 4}" fill="{colour}"/>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--svg")
    ap.add_argument("--accuracy", help="quant_accuracy.py's JSON, to print beside the reduced-precision ratios")
    a = ap.parse_args()
    run = json.load(open(a.run))
    # The reference harness writes "results", run_engines.py "rows".
    results = run.get("results") or run["rows"]
    print(table(results))
    reduced = precision_table(results, json.load(open(a.accuracy)) if a.accuracy else None)
    if reduced:
        print("\n" + reduced)
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg(results) + "\n")


if __name__ == "__main__":
    main()
