"""The protocol with real clients: tritonclient over HTTP (binary and JSON) and gRPC, the kserve
SDK's REST client, plain requests; every output bit-identical to the library's own."""

import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import same_bits, session_outputs


def http_client(server):
    return httpclient.InferenceServerClient(url=server.http, network_timeout=30)


def grpc_client(server):
    return grpcclient.InferenceServerClient(url=server.grpc)


def test_health_metadata_and_config(server):
    c = http_client(server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("mnist-mlp") and c.is_model_ready("digits")
    meta = c.get_server_metadata()
    assert meta["name"] == "densebatch"
    assert {"binary_tensor_data", "model_repository", "statistics", "model_configuration"} <= set(meta["extensions"])
    model = c.get_model_metadata("mnist-mlp")
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
    assert model["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    config = c.get_model_config("mnist-mlp")
    assert config["max_batch_size"] == 64
    assert config["input"][0]["dims"] == [784] and config["input"][0]["data_type"] == "TYPE_FP32"
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).json() == {"live": True}

    g = grpc_client(server)
    assert g.is_server_live() and g.is_server_ready() and g.is_model_ready("digits")
    gmeta = g.get_model_metadata("digits", as_json=True)
    assert gmeta["inputs"][0]["shape"] == ["-1", "64"]
    gconfig = g.get_model_config("mnist-mlp", as_json=True)["config"]
    assert gconfig["max_batch_size"] == 64 and gconfig["input"][0]["dims"] == ["784"]


def test_http_binary_is_bit_identical(server, mnist_rows):
    x, y = mnist_rows
    c = http_client(server)
    for rows in (slice(0, 1), slice(0, 40), slice(13, 14), slice(5, 37)):
        i = httpclient.InferInput("input", list(x[rows].shape), "FP32")
        i.set_data_from_numpy(x[rows], binary_data=True)
        o = httpclient.InferRequestedOutput("output", binary_data=True)
        r = c.infer("mnist-mlp", [i], outputs=[o], request_id="42")
        assert r.get_response()["id"] == "42"
        assert same_bits(r.as_numpy("output"), y[rows])
    # No outputs requested: tritonclient asks for binary_data_output.
    i = httpclient.InferInput("input", [3, 784], "FP32")
    i.set_data_from_numpy(x[:3])
    assert same_bits(c.infer("mnist-mlp", [i]).as_numpy("output"), y[:3])


def test_http_json_is_bit_identical(server, mnist_rows):
    x, y = mnist_rows
    c = http_client(server)
    i = httpclient.InferInput("input", [40, 784], "FP32")
    i.set_data_from_numpy(x, binary_data=False)
    o = httpclient.InferRequestedOutput("output", binary_data=False)
    r = c.infer("mnist-mlp", [i], outputs=[o])
    assert "data" in r.get_response()["outputs"][0]
    assert same_bits(r.as_numpy("output"), y)


def test_plain_json_flat_nested_and_one_sample(server, mnist_rows):
    x, y = mnist_rows
    url = f"{server.url}/v2/models/mnist-mlp/infer"
    for data, shape in ((x[:2].tolist(), [2, 784]), (x[:2].ravel().tolist(), [2, 784])):
        body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]}
        r = requests.post(url, json=body, timeout=30)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [2, 10]
        assert same_bits(np.array(out["data"], dtype=np.float32).reshape(2, 10), y[:2])
    # One sample as [W] comes back as [O].
    body = {"inputs": [{"name": "input", "shape": [784], "datatype": "FP32", "data": x[7].tolist()}]}
    out = requests.post(url, json=body, timeout=30).json()["outputs"][0]
    assert out["shape"] == [10] and same_bits(np.array(out["data"], dtype=np.float32), y[7])


def test_grpc_is_bit_identical(server, mnist_rows):
    x, y = mnist_rows
    g = grpc_client(server)
    for rows in (slice(0, 1), slice(0, 40), slice(21, 30)):
        i = grpcclient.InferInput("input", list(x[rows].shape), "FP32")
        i.set_data_from_numpy(x[rows])
        r = g.infer("mnist-mlp", [i], outputs=[grpcclient.InferRequestedOutput("output")], request_id="g1")
        assert r.get_response().id == "g1"
        assert same_bits(r.as_numpy("output"), y[rows])


def test_kserve_rest_client_is_bit_identical(server, mnist_rows, tmp_path):
    x, y = mnist_rows
    np.save(tmp_path / "x.npy", x[:8])
    script = Path(__file__).with_name("kserve_client.py")
    done = subprocess.run([sys.executable, str(script), server.url, "mnist-mlp", str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "k1"
    assert same_bits(np.load(tmp_path / "y.npy").reshape(8, 10), y[:8])


def test_statistics_count_rows_and_batches(server, mnist_rows):
    x, _ = mnist_rows
    c = http_client(server)

    def stats():
        return c.get_inference_statistics("digits")["model_stats"][0]

    before = stats()
    digits = np.zeros((5, 64), dtype=np.float32)
    for _ in range(4):
        i = httpclient.InferInput("input", [5, 64], "FP32")
        i.set_data_from_numpy(digits)
        c.infer("digits", [i])
    # Batch records reach the statistics just after the replies: wait (bounded) for the last.
    for _ in range(50):
        after = stats()
        if after["inference_count"] - before["inference_count"] >= 20:
            break
        time.sleep(0.1)
    assert after["inference_count"] - before["inference_count"] == 20
    runs = after["execution_count"] - before["execution_count"]
    assert 1 <= runs <= 4
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 4
    assert int(success["ns"]) > 0
    assert any(b["batch_size"] == 5 for b in after["batch_stats"])
    g = grpc_client(server).get_inference_statistics("digits", as_json=True)["model_stats"][0]
    assert int(g["inference_count"]) >= 20


def test_metrics_are_prometheus_text(server):
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    replies = families["densebatch_front_replies"]
    ok = [s.value for s in replies.samples if s.labels == {"protocol": "http", "code": "200"}]
    assert ok and ok[0] > 0
    assert families["densebatch_ready"].samples[0].value == 1


def test_precision_is_served_and_reported(start_server, mnist_rows, tmp_path_factory):
    """`--precision` compiles every model in it: HTTP and gRPC answer with the bits the library
    gives in that precision (not f32's), and both protocols' model configuration name it."""
    x, y_f32 = mnist_rows
    server = start_server("--threads", "1", "--precision", "int8-full")
    expected = session_outputs(tmp_path_factory, "mnist-mlp", x, "int8-full")
    assert not same_bits(expected, y_f32)
    config = http_client(server).get_model_config("mnist-mlp")
    assert config["parameters"] == {"precision": {"string_value": "int8-full"}}
    gconfig = grpc_client(server).get_model_config("mnist-mlp", as_json=True)["config"]
    assert gconfig["parameters"] == {"precision": {"string_value": "int8-full"}}
    for rows in (slice(0, 1), slice(0, 40), slice(5, 37)):
        i = httpclient.InferInput("input", list(x[rows].shape), "FP32")
        i.set_data_from_numpy(x[rows], binary_data=True)
        assert same_bits(http_client(server).infer("mnist-mlp", [i]).as_numpy("output"), expected[rows])
        g = grpcclient.InferInput("input", list(x[rows].shape), "FP32")
        g.set_data_from_numpy(x[rows])
        assert same_bits(grpc_client(server).infer("mnist-mlp", [g]).as_numpy("output"), expected[rows])
    assert server.stop() == 0


def test_default_precision_is_reported_as_f32(server):
    config = http_client(server).get_model_config("digits")
    assert config["parameters"] == {"precision": {"string_value": "f32"}}
