"""A Dask array of rows through densebatch with `map_blocks` on Dask's threaded scheduler.

    python python/examples/dask_blocks.py
"""

from __future__ import annotations

import dask.array as da
import numpy as np

import densebatch
from densebatch.dask import predict_array


def main() -> None:
    model = densebatch.Model.random([784, 512, 256, 10], output="softmax", seed=1).compile(threads=1)
    x = da.random.default_rng(0).standard_normal((100_000, 784), chunks=(5_000, 784)).astype(np.float32)
    y = predict_array(model, x).compute(scheduler="threads", num_workers=2)
    print(f"{y.shape[0]:,} rows → {y.shape}, row sums {y.sum(axis=1)[:3]}")


if __name__ == "__main__":
    main()
