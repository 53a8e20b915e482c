#!/usr/bin/env python3
"""Two Python threads, each calling `predict` on a one-thread model: how close to 2x one thread?

    target/compare-venv/bin/python benches/compare/py_thread_scaling.py [--model-dir DIR] [--batch 64]

Times, in interleaved rounds, the same work (2 x CALLS predicts of BATCH rows) done by one Python
thread and by two (CALLS each), for densebatch (`load(dir, threads=1)`, so each call computes on
its calling thread with the GIL released) and for ONNX Runtime (intra_op_num_threads=1, which also
releases the GIL in `run`). Prints each engine's median speed-up and its range over the rounds.
"""
import argparse
import json
import os
import statistics
import threading
import time

import numpy as np


def run_threads(predict, x, calls, threads):
    def work():
        for _ in range(calls // threads):
            predict(x)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="target/compare/models/mnist-mlp")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one timed block")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    import densebatch
    import onnxruntime as ort

    with open(os.path.join(args.model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    x = np.random.default_rng(1).standard_normal((args.batch, manifest["widths"][0]), dtype=np.float32)
    ours = densebatch.load(args.model_dir, threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(args.model_dir, manifest["onnx"]), options,
                                   providers=["CPUExecutionProvider"])
    engines = {"densebatch": ours.predict, "onnxruntime": lambda x: session.run(["y"], {"x": x})}
    calls = {}
    for name, predict in engines.items():
        predict(x)
        started = time.perf_counter()
        for _ in range(20):
            predict(x)
        per_call = (time.perf_counter() - started) / 20
        calls[name] = max(4, int(args.seconds / per_call) // 2 * 2)
    speedups = {name: [] for name in engines}
    for r in range(args.rounds):
        order = list(engines.items()) if r % 2 == 0 else list(engines.items())[::-1]
        for name, predict in order:
            one = run_threads(predict, x, calls[name], 1)
            two = run_threads(predict, x, calls[name], 2)
            speedups[name].append(one / two)
    print(f"{manifest['name']} batch {args.batch}, {args.rounds} interleaved rounds, "
          f"{len(os.sched_getaffinity(0))} CPUs")
    for name, values in speedups.items():
        print(f"{name:12s} two threads / one: median {statistics.median(values):.2f}x "
              f"(range {min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
