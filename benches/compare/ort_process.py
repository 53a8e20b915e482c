#!/usr/bin/env python3
"""ONNX Runtime behind the external-engine protocol, so that it can be timed in a fresh process per
block, as our engine is:

    ort_process.py MODEL_DIR BATCH THREADS REPS WARMUP

Builds the same session as run_engines.py's in-process `ort`, warms up for WARMUP calls and at least
300 ms (as `refbench` does), then prints {"lat_ns": [...]} for REPS timed calls as its last line.
run_engines.py --ort-process uses it as engine `ort-proc`: if ort-proc/ort is about 1, starting a
process per block costs an engine nothing and the ours/ort column compares like with like.
"""
import json
import os
import sys
import time

import numpy as np

from run_engines import OrtRunner, timed

MIN_WARMUP_S = 0.3


def main():
    folder, batch, threads, reps, warmup = sys.argv[1], *map(int, sys.argv[2:6])
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    runner = OrtRunner(folder, manifest, threads)
    x = np.random.default_rng(42).standard_normal((batch, manifest["widths"][0]), dtype=np.float32)
    feed = {"x": x}
    start, done = time.perf_counter(), 0
    while done < warmup or time.perf_counter() - start < MIN_WARMUP_S:
        runner.session.run(["y"], feed)
        done += 1
    print(json.dumps({"lat_ns": timed(lambda: runner.session.run(["y"], feed), reps)}))


if __name__ == "__main__":
    main()
