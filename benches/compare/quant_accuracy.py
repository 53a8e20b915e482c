#!/usr/bin/env python3
"""Accuracy of each engine of the comparison harness, ONNX Runtime's quantized models and ours, to
read beside their speed.

Usage (from the repository root, after make_models.py and make_ort_quantized.py):
    target/compare-venv/bin/python benches/compare/quant_accuracy.py --models-dir target/compare/models \
        [--models mnist-mlp] [--densebatch target/release/densebatch] [--precisions bf16,int8,int8-full] [--json out.json]

Columns, per model and engine:
  check max abs, check SQNR   against the float64 check vectors (x_check.npy, y_check.npy; 4 rows)
  SQNR vs fp32, argmax        on ROWS standard-normal rows (numpy seed ROWS_SEED), against ONNX
                              Runtime fp32 (model.onnx) on the same rows, run in batches of BATCH
  batch vs alone              the largest |y| difference of a row computed inside a batch of BATCH
                              rows and computed alone (0: a row's bits do not depend on its batch)
  ORT graph                   the ops of ORT's optimised graph (did it fuse the quantized MatMul?)

ONNX Runtime runs as run_engines.py runs it (all graph optimisations), on --threads threads. Our
engine's bf16 and int8 rows come from `densebatch inspect MODEL --precision P --rows ROWS`, which
measures them against our f32 on its own seeded rows (src/bin/densebatch/accuracy.rs), and from
`densebatch run` for the batch test; ours f32 is measured through `densebatch run` like ORT.
"""
import argparse
import collections
import json
import os
import re
import subprocess
import tempfile

import numpy as np

from make_ort_quantized import VARIANTS

ROWS = 10_000
ROWS_SEED = 20_261_203
BATCH = 64


def sqnr_db(want, got):
    noise = float(np.sum((np.asarray(got, np.float64) - want) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(np.square(want, dtype=np.float64))) / noise)


def in_batches(run, x):
    return np.concatenate([run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def ort_session(path, threads, optimized=None):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized:
        options.optimized_model_filepath = optimized
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["y"], {"x": x})[0]


def ort_rows(folder, threads, x_check, y_check, x, reference):
    import onnx
    rows = []
    for engine in ["ort", *VARIANTS]:
        path = os.path.join(folder, "model.onnx" if engine == "ort" else f"{engine}.onnx")
        if not os.path.isfile(path):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            optimized = os.path.join(scratch, "optimized.onnx")
            run = ort_session(path, threads, optimized)
            ops = collections.Counter(n.op_type for n in onnx.load(optimized).graph.node)
        got = in_batches(run, x)
        batch = x[:BATCH]
        alone = np.concatenate([run(batch[i:i + 1]) for i in range(BATCH)])
        check = run(x_check)
        rows.append({"engine": engine, "check_max_abs": float(np.abs(check - y_check).max()),
                     "check_sqnr_db": sqnr_db(y_check, check), "sqnr_db": sqnr_db(reference, got),
                     "argmax": float(np.mean(got.argmax(1) == reference.argmax(1))),
                     "batch_vs_alone": float(np.abs(run(batch) - alone).max()),
                     "ort_graph": " ".join(f"{op}×{n}" if n > 1 else op for op, n in ops.items())})
    return rows


def inspect_lines(densebatch, folder, precision):
    """`densebatch inspect --precision`'s accuracy lines, as {label: [rows, max abs, max rel, SQNR, cos, argmax]}."""
    done = subprocess.run([densebatch, "inspect", folder, "--precision", precision, "--rows", str(ROWS)],
                          capture_output=True, text=True, check=True)
    lines = {}
    for line in done.stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 7 and parts[1].isdigit():
            lines[parts[0]] = parts[1:]
    return lines


def densebatch_run(densebatch, folder, precision, x, batch, scratch):
    source, out = os.path.join(scratch, "x.npy"), os.path.join(scratch, "y.npy")
    np.save(source, x.astype(np.float32))
    subprocess.run([densebatch, "run", folder, "--input", source, "--output", out, "--batch", str(batch),
                    "--precision", precision, "--quiet"], capture_output=True, text=True, check=True)
    return np.load(out)


def our_rows(densebatch, folder, precisions, x_check, y_check, x, reference):
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for precision in ["f32", *precisions]:
            batch = x[:BATCH]
            together = densebatch_run(densebatch, folder, precision, batch, BATCH, scratch)
            alone = densebatch_run(densebatch, folder, precision, batch, 1, scratch)
            row = {"engine": "ours" if precision == "f32" else f"ours-{precision}",
                   "batch_vs_alone": float(np.abs(together - alone).max()), "ort_graph": ""}
            if precision == "f32":
                check = densebatch_run(densebatch, folder, precision, x_check, BATCH, scratch)
                got = densebatch_run(densebatch, folder, precision, x, BATCH, scratch)
                row.update(check_max_abs=float(np.abs(check - y_check).max()), check_sqnr_db=sqnr_db(y_check, check),
                           sqnr_db=sqnr_db(reference, got), argmax=float(np.mean(got.argmax(1) == reference.argmax(1))))
            else:
                lines = inspect_lines(densebatch, folder, precision)
                check = lines[f"float64 check vectors ({precision})"]
                random = lines["our f32, random N(0,1) rows"]
                row.update(check_max_abs=float(check[1]), check_sqnr_db=float(check[3]), sqnr_db=float(random[3]),
                           argmax=float(random[5].rstrip("%")) / 100, against="our f32")
            rows.append(row)
    return rows


def markdown(results):
    out = [f"Accuracy: check = the float64 check vectors; SQNR and argmax against ONNX Runtime fp32 on {ROWS} "
           f"standard-normal rows (ours*: against our f32, `densebatch inspect`); batch vs alone = max |y| "
           f"difference of a row in a batch of {BATCH} and alone.", "",
           "| model | engine | check max abs | check SQNR dB | SQNR dB vs fp32 | argmax vs fp32 | batch vs alone | ORT graph |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    num = lambda r, key, fmt: format(r[key], fmt) if key in r else "-"
    for r in results:
        engine = r["engine"] + ("*" if r.get("against") else "")
        out.append(f"| {r['model']} | {engine} | {num(r, 'check_max_abs', '.1e')} | {num(r, 'check_sqnr_db', '.1f')} | "
                   f"{num(r, 'sqnr_db', '.1f')} | {num(r, 'argmax', '.4f')} | {num(r, 'batch_vs_alone', '.1e')} | "
                   f"{r['ort_graph']} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--models", default="tiny-mlp,mnist-mlp,wide-mlp")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime's intra-op threads")
    parser.add_argument("--densebatch", help="our CLI (cargo build --release --features cli); without it, ORT only")
    parser.add_argument("--precisions", default="bf16,int8,int8-full", help="our reduced precisions to measure")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    results = []
    for name in args.models.split(","):
        folder = os.path.join(args.models_dir, name)
        x_check = np.load(os.path.join(folder, "x_check.npy"))
        y_check = np.load(os.path.join(folder, "y_check.npy")).astype(np.float64)
        width = x_check.shape[1]
        x = np.random.default_rng(ROWS_SEED).standard_normal((ROWS, width), dtype=np.float32)
        reference = in_batches(ort_session(os.path.join(folder, "model.onnx"), args.threads), x)
        rows = ort_rows(folder, args.threads, x_check, y_check, x, reference)
        if args.densebatch:
            precisions = [p for p in args.precisions.split(",") if p]
            rows = our_rows(args.densebatch, folder, precisions, x_check, y_check, x, reference) + rows
        results += [{"model": name, **r} for r in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": ROWS, "rows_seed": ROWS_SEED, "batch": BATCH, "results": results}, f, indent=2)
    print(markdown(results))


if __name__ == "__main__":
    main()
