"""Scale-out on a real local Ray (two CPUs, loopback only): Ray Data batch inference and a Ray
Serve deployment, both bit-identical to a local predict."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import bits

import densebatch

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_local():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray binds its node to a routable address unless told it runs outside a cluster; only
    # loopback is allowed here.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 << 20,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    yield ray
    ray.shutdown()


def test_ray_data_map_batches_is_bit_identical(ray_local, digits_dir, digits_test):
    import ray.data

    from densebatch.ray import predict_dataset

    x = np.tile(digits_test["x"].astype(np.float32), (4, 1))
    model = densebatch.load(digits_dir, threads=1)
    dataset = ray.data.from_numpy(x)
    out = predict_dataset(dataset, model, actors=2, batch_size=300)
    y = np.concatenate([b["y"] for b in out.iter_batches(batch_format="numpy", batch_size=None)])
    assert y.shape == (x.shape[0], 10)
    assert np.array_equal(bits(y), bits(model.predict(x)))


def test_ray_serve_deployment_is_bit_identical(ray_local, digits_dir, digits_test):
    from ray import serve

    from densebatch.ray import deployment

    x = digits_test["x"].astype(np.float32)[:128]
    model = densebatch.load(digits_dir, threads=1)
    serve.start(proxy_location="Disabled")
    try:
        handle = serve.run(deployment(model, max_batch_size=16), name="digits", route_prefix=None)
        responses = [handle.remote(row) for row in x]
        ys = np.concatenate([r.result(timeout_s=60) for r in responses])
        assert np.array_equal(bits(ys), bits(model.predict(x)))
        batch = handle.remote(x[:5]).result(timeout_s=60)
        assert np.array_equal(bits(batch), bits(model.predict(x[:5])))
    finally:
        serve.shutdown()
