#!/usr/bin/env python3
"""Time densebatch against ONNX Runtime and numpy on the same models, batches and thread counts.

Usage (from the repository root; compare.sh sets everything up):
    target/compare-venv/bin/python benches/compare/run_engines.py --models-dir target/compare/models \
        --ours 'target/release/examples/refbench {model_dir} {batch} {threads} {reps} {warmup}' \
        [--models mnist-mlp] [--batches 1,32,512] [--threads 1,2] [--rounds 5] [--json out.json] [--twin] [--ort-process]
        [--engines ort,ort-dyn-pt,ort-nb8-a4] [--ours-precisions f32,bf16,int8,int8-full]

Method. For each (model, batch) every engine configuration (engine x thread count) is timed in
interleaved rounds: round r runs every configuration once, in forward order on even rounds and
reverse order on odd ones, each for a block of about --block-seconds of calls after one untimed
call. A configuration's latency is the median of its per-round medians; throughput is batch /
latency. Machine noise hits all engines of a round alike, so the ratios to ONNX Runtime at the same
thread count are what to read; absolute numbers move from run to run.

Engines
  ort    onnxruntime CPU provider, all graph optimisations, sequential execution,
         intra_op_num_threads = T, inter_op_num_threads = 1
  ort-dyn-pt, ort-dyn-pc, ort-qdq, ort-nb8-a1, ort-nb8-a4
         ONNX Runtime's quantized versions of the model (make_ort_quantized.py writes them next to
         model.onnx; quant_accuracy.py measures their accuracy), each run exactly as `ort` is
  numpy  h = x @ W; h += b; relu/sigmoid/tanh/softmax in place (no gelu); BLAS threads limited to T (threadpoolctl)
  ours   an external command (--ours) following the protocol
             COMMAND MODEL_DIR BATCH THREADS REPS WARMUP
         that runs WARMUP untimed and REPS timed batches and prints {"lat_ns": [...]} as its last
         line of stdout (the project's `refbench` example does).
  ours-bf16, ours-int8, ours-int8-full
         with --ours-precisions f32,bf16,int8,int8-full, the same command with the precision as a
         sixth argument (or where the template says {precision}); `ours` is the f32 one.
  twin   with --twin, the same command again as a second engine in the same rounds: an A/A control.
         Identical engines should tie, so ours/twin shows how far this machine's noise alone moves a
         ratio in this run; an ours/ort ratio within that distance of 1 is a tie, not a result.
  py     densebatch's Python package in this process (`--engines ort,py`; install it into the venv
         first: `target/compare-venv/bin/pip install python/`), timed around `model.predict(x)` as
         ort is around `session.run`: the ratio py/ort includes both bindings' call overheads.
         `py-twin` is the same engine again, the A/A control for py.
  ort-proc with --ort-process, ONNX Runtime behind the same protocol (ort_process.py): a fresh process
         per block, as ours is. ort-proc/ort shows what that costs an engine.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

from make_ort_quantized import VARIANTS as ORT_QUANTIZED
from report import precision_table

OURS_REDUCED = ("ours-bf16", "ours-int8", "ours-int8-full")
ORT_PROCESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_process.py")


def quantile(values, q):
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def cpu_name():
    """Model name plus family/model numbers and the widest SIMD, e.g. "AMD EPYC (family 25 model 1, AVX2)"."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        import platform
        return platform.processor() or "unknown CPU"
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')} "
            f"model {info.get('model', '?')}, {simd})")


class NumpyRunner:
    def __init__(self, folder, manifest, threads):
        self.threads = threads
        self.layers = [(np.load(os.path.join(folder, l["W"])), np.load(os.path.join(folder, l["b"])),
                        l["activation"]) for l in manifest["layers"]]
        unsupported = {act for _, _, act in self.layers} - {"identity", "relu", "sigmoid", "tanh", "softmax"}
        if unsupported:  # numpy has no erf for GELU
            raise SystemExit(f"numpy runner: no {', '.join(sorted(unsupported))}; use --engines ort")

    def forward(self, x):
        h = x
        for w, b, act in self.layers:
            h = h @ w
            h += b
            if act == "relu":
                np.maximum(h, 0.0, out=h)
            elif act == "sigmoid":
                np.negative(h, out=h)
                np.exp(h, out=h)
                h += 1.0
                np.reciprocal(h, out=h)
            elif act == "tanh":
                np.tanh(h, out=h)
            elif act == "softmax":
                h -= h.max(axis=1, keepdims=True)
                np.exp(h, out=h)
                h /= h.sum(axis=1, keepdims=True)
        return h

    def time_calls(self, x, reps, warmup):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=self.threads, user_api="blas"):
            for _ in range(warmup):
                self.forward(x)
            return timed(lambda: self.forward(x), reps)


class OrtRunner:
    def __init__(self, folder, manifest, threads, file=None):
        import onnxruntime as ort
        path = os.path.join(folder, file or manifest["onnx"])
        if not os.path.isfile(path):
            raise SystemExit(f"{path} is missing: run make_ort_quantized.py {os.path.dirname(folder)}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def forward(self, x):
        return self.session.run(["y"], {"x": x})[0]

    def time_calls(self, x, reps, warmup):
        feed = {"x": x}
        for _ in range(warmup):
            self.session.run(["y"], feed)
        return timed(lambda: self.session.run(["y"], feed), reps)


class PyRunner:
    """densebatch's Python package (`pip install python/`), timed around its Python call exactly as
    `ort` is: `model.predict(x)` returns a new array, as `session.run` does."""

    def __init__(self, folder, manifest, threads):
        import densebatch
        self.model = densebatch.load(folder, threads=threads)

    def forward(self, x):
        return self.model.predict(x)

    def time_calls(self, x, reps, warmup):
        for _ in range(warmup):
            self.model.predict(x)
        return timed(lambda: self.model.predict(x), reps)


class CommandRunner:
    """An engine in another process, speaking the MODEL_DIR BATCH THREADS REPS WARMUP protocol."""

    def __init__(self, template, folder, threads, batch, precision="f32"):
        self.template, self.folder, self.threads, self.batch = template, folder, threads, batch
        if precision != "f32" and "{precision}" not in template:
            self.template += " {precision}"
        self.precision = precision

    def time_calls(self, x, reps, warmup):
        command = self.template.format(model_dir=shlex.quote(self.folder), batch=self.batch,
                                       threads=self.threads, reps=reps, warmup=warmup,
                                       precision=self.precision)
        done = subprocess.run(command, shell=True, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"engine command failed ({done.returncode}): {command}\n{done.stderr[-2000:]}")
        last = [line for line in done.stdout.splitlines() if line.strip()][-1]
        return [int(v) for v in json.loads(last)["lat_ns"]]


def timed(call, reps):
    clock = time.perf_counter_ns
    out = []
    for _ in range(reps):
        start = clock()
        call()
        out.append(clock() - start)
    return out


def bench_model(args, name, log):
    folder = os.path.join(args.models_dir, name)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    threads = [int(t) for t in args.threads.split(",")]
    in_process = {}
    for engine in [e for e in args.engines.split(",") if e]:
        for t in threads:
            if engine in ORT_QUANTIZED:
                runner = OrtRunner(folder, manifest, t, f"{engine}.onnx")
            else:
                runner = {"ort": OrtRunner, "numpy": NumpyRunner, "py": PyRunner, "py-twin": PyRunner}[engine](folder, manifest, t)
            # Every engine must compute the model before its time counts (a quantized one to
            # within 10 %: that it runs this model, not how well; see quant_accuracy.py).
            x_check = np.load(os.path.join(folder, "x_check.npy"))
            y_check = np.load(os.path.join(folder, "y_check.npy"))
            error = float(np.abs(runner.forward(x_check) - y_check).max() / np.abs(y_check).max())
            if error > (0.1 if engine in ORT_QUANTIZED else 1e-4):
                raise SystemExit(f"{engine} t{t} disagrees with y_check on {name}: {error:.2e}")
            in_process[(engine, t)] = runner
    rows = []
    rng = np.random.default_rng(42)
    for batch in [int(b) for b in args.batches.split(",")]:
        x = rng.standard_normal((batch, manifest["widths"][0]), dtype=np.float32)
        configs = list(in_process.items())
        if args.ours:
            for precision in args.ours_precisions.split(","):
                engine = "ours" if precision == "f32" else f"ours-{precision}"
                configs += [((engine, t), CommandRunner(args.ours, folder, t, batch, precision)) for t in threads]
            if args.twin:
                configs += [(("twin", t), CommandRunner(args.ours, folder, t, batch)) for t in threads]
        if args.ort_process:
            command = f"{shlex.quote(sys.executable)} {shlex.quote(ORT_PROCESS)} {{model_dir}} {{batch}} " \
                      "{threads} {reps} {warmup}"
            configs += [(("ort-proc", t), CommandRunner(command, folder, t, batch)) for t in threads]
        # Calibrate: reps per block so that each block lasts about --block-seconds.
        reps = {}
        for key, runner in configs:
            per_call = min(runner.time_calls(x, reps=3, warmup=2)) / 1e9
            reps[key] = int(min(args.max_reps, max(args.min_reps, args.block_seconds / max(per_call, 1e-7))))
        medians = {key: [] for key, _ in configs}
        calls = {key: [] for key, _ in configs}
        for r in range(args.rounds):
            for key, runner in (configs if r % 2 == 0 else configs[::-1]):
                lat = runner.time_calls(x, reps=reps[key], warmup=1)
                medians[key].append(quantile(lat, 0.5))
                calls[key].extend(lat)
        for (engine, t), _ in configs:
            med = quantile(medians[(engine, t)], 0.5)
            precision = ORT_QUANTIZED[engine][1] if engine in ORT_QUANTIZED else \
                engine[len("ours-"):] if engine in OURS_REDUCED else "f32"
            row = {"model": name, "batch": batch, "engine": engine, "threads": t, "precision": precision,
                   "median_us": med / 1e3, "p99_us": quantile(calls[(engine, t)], 0.99) / 1e3,
                   "samples_per_s": batch / (med / 1e9),
                   "gflops": manifest["flops_per_sample"] * batch / med,
                   "spread": (max(medians[(engine, t)]) - min(medians[(engine, t)])) / med,
                   "calls": len(calls[(engine, t)])}
            rows.append(row)
            log(f"{name:10s} b={batch:<5d} {engine:>10s} t{t}: {row['median_us']:10.1f} us "
                f"{row['samples_per_s']:12.0f} samples/s  spread {100 * row['spread']:.0f}%")
    return rows


def markdown(rows, cpu):
    out = [f"CPU: {cpu}, {os.cpu_count()} logical CPUs. Median of per-round medians; "
           "ratio = our throughput / ONNX Runtime's at the same thread count (> 1: faster).", ""]
    threads = sorted({r["threads"] for r in rows})
    engines = [e for e in ("ours", *OURS_REDUCED, "twin", "py", "py-twin", "ort", *ORT_QUANTIZED, "ort-proc", "numpy")
               if any(r["engine"] == e for r in rows)]
    ratios = [(a, b) for a, b in (("ours", "ort"), ("ours", "twin"), ("py", "ort"), ("py", "py-twin"), ("ort-proc", "ort"))
              if a in engines and b in engines]
    head = ["model", "batch"] + [f"{e} t{t} (samples/s)" for e in engines for t in threads]
    head += [f"{a}/{b} t{t}" for a, b in ratios for t in threads]
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|---:|" + "---:|" * (len(head) - 2))
    index = {(r["model"], r["batch"], r["engine"], r["threads"]): r for r in rows}
    for model, batch in dict.fromkeys((r["model"], r["batch"]) for r in rows):
        cells = [model, str(batch)]
        for e in engines:
            for t in threads:
                r = index.get((model, batch, e, t))
                cells.append(f"{r['samples_per_s']:.0f}" if r else "-")
        for num, den in ratios:
            for t in threads:
                a, b = index.get((model, batch, num, t)), index.get((model, batch, den, t))
                cells.append(f"{a['samples_per_s'] / b['samples_per_s']:.2f}" if a and b else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--models", default="tiny-mlp,mnist-mlp,wide-mlp")
    parser.add_argument("--batches", default="1,8,32,128,512,2048")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--engines", default="ort,numpy", help="in-process engines: ort,numpy,py (py: the densebatch Python package, installed "
                        "into this venv with `pip install python/`), and ONNX Runtime's quantized models: "
                        + ",".join(ORT_QUANTIZED))
    parser.add_argument("--ours", help="command template for our engine (see above)")
    parser.add_argument("--ours-precisions", default="f32",
                        help="time our command at each of these precisions (f32,bf16,int8,int8-full), as ours, "
                             "ours-bf16, ours-int8, ours-int8-full")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block-seconds", type=float, default=0.25)
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=20000)
    parser.add_argument("--twin", action="store_true",
                        help="also time our command as a second engine, 'twin' (an A/A noise control)")
    parser.add_argument("--ort-process", action="store_true",
                        help="also time ONNX Runtime in a fresh process per block, 'ort-proc' (a control)")
    parser.add_argument("--accuracy", help="quant_accuracy.py --json output, printed beside the reduced-precision ratios")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    def log(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    rows = []
    for name in args.models.split(","):
        rows += bench_model(args, name, log)
    cpu = cpu_name()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "logical_cpus": os.cpu_count(), "rows": rows}, f, indent=2)
    print(markdown(rows, cpu))
    accuracy = None
    if args.accuracy:
        with open(args.accuracy) as f:
            accuracy = json.load(f)
    reduced = precision_table(rows, accuracy)
    if reduced:
        print("\n" + reduced)


if __name__ == "__main__":
    main()
