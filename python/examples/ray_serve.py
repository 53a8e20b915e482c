"""Online serving with Ray Serve: a deployment whose replica batches requests with densebatch's
scheduler (`submit_async`), called through a deployment handle.

    python python/examples/ray_serve.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import densebatch
from densebatch.ray import deployment

DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits"


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A local cluster on loopback only (Ray otherwise binds its node to a routable address).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(proxy_location="Disabled")
    model = densebatch.load(DIGITS, threads=1)
    handle = serve.run(deployment(model, max_batch_size=32, max_wait_s=0.002), name="digits",
                       route_prefix=None)
    x = np.random.default_rng(0).random((256, 64), dtype=np.float32) * 16
    ys = np.concatenate([r.result() for r in [handle.remote(row) for row in x]])
    assert np.array_equal(ys.view(np.uint32), model.predict(x).view(np.uint32))
    print(f"256 single-row requests through Ray Serve: classes {ys.argmax(axis=1)[:10]}..., "
          "bit-identical to a local predict")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
