"""Offline batch inference with Ray Data on a local two-CPU Ray: the bundled digits test set
(tiled to 100,000 rows) through a pool of two densebatch actors, beside a plain loop.

    python python/examples/ray_data.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import densebatch
from densebatch.ray import predict_dataset

DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits"


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A local cluster on loopback only (Ray otherwise binds its node to a routable address).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from safetensors.numpy import load_file

    x = np.tile(load_file(str(DIGITS / "test.safetensors"))["x"].astype(np.float32), (280, 1))
    model = densebatch.load(DIGITS, threads=1)

    started = time.perf_counter()
    local = densebatch.batch_inference(model, x, batch_size=1024)
    loop_s = time.perf_counter() - started

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             object_store_memory=256 << 20, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dataset = ray.data.from_numpy(x).materialize()
    out = predict_dataset(dataset, model, actors=2, batch_size=4096)
    started = time.perf_counter()
    y = np.concatenate([b["y"] for b in out.iter_batches(batch_format="numpy", batch_size=None)])
    ray_s = time.perf_counter() - started
    ray.shutdown()

    assert np.array_equal(y.view(np.uint32), local.view(np.uint32))
    print(f"{x.shape[0]:,} rows: plain loop {x.shape[0] / loop_s:,.0f} rows/s, "
          f"Ray Data (2 actors) {x.shape[0] / ray_s:,.0f} rows/s; outputs bit-identical")


if __name__ == "__main__":
    main()
