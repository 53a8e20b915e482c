"""The Python guides' `ParallelInference` (a ThreadPoolExecutor fanning samples over threads), run
against a densebatch model: because `predict` releases the GIL, the threads really run in
parallel. Prints the speed-up of two threads over one and checks the outputs are bit-identical.

    python python/examples/parallel_inference.py [MODEL_PATH]
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

import densebatch


class Predictor(Protocol):
    """The guides' protocol: anything with `predict(batch) -> outputs`."""

    def predict(self, x: np.ndarray) -> np.ndarray: ...


class ParallelInference:
    """Splits a batch into chunks and predicts them on a thread pool, as the guides do."""

    def __init__(self, model: Predictor, workers: int, chunk_rows: int = 64) -> None:
        self.model, self.workers, self.chunk_rows = model, workers, chunk_rows

    def predict(self, x: np.ndarray) -> np.ndarray:
        chunks = [x[i : i + self.chunk_rows] for i in range(0, len(x), self.chunk_rows)]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return np.concatenate(list(pool.map(self.model.predict, chunks)))


def main() -> None:
    if len(sys.argv) > 1:
        model = densebatch.load(sys.argv[1], threads=1)
    else:
        # mnist-mlp's shape: 784 → 512 → 256 → 10.
        model = densebatch.Model.random([784, 512, 256, 10], output="softmax", seed=1).compile(threads=1)
    x = np.random.default_rng(0).standard_normal((8192, model.input_width), dtype=np.float32)
    print(f"{model!r}: {x.shape[0]} rows, chunks of 64, one engine thread per Python thread")
    results, times = {}, {}
    for workers in (1, 2):
        runner = ParallelInference(model, workers)
        runner.predict(x[:256])
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            results[workers] = runner.predict(x)
            best = min(best, time.perf_counter() - started)
        times[workers] = best
        print(f"{workers} thread(s): {best * 1e3:8.1f} ms ({x.shape[0] / best:,.0f} rows/s)")
    assert np.array_equal(results[1].view(np.uint32), results[2].view(np.uint32))
    print(f"speed-up of two threads: {times[1] / times[2]:.2f}x, outputs bit-identical")


if __name__ == "__main__":
    main()
