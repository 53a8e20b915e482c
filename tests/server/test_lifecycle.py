"""Model repository load/unload/replace under traffic, and SIGTERM during traffic: every request
the server accepted is answered, nothing is lost, the process exits 0."""

import concurrent.futures as cf
import threading
import time

import numpy as np
import requests
import tritonclient.http as httpclient

from conftest import MODELS, require, same_bits


def traffic(url, body, stop: threading.Event, results: list, max_requests=400):
    """Sends `body` in a loop (fresh connection each time) until `stop`; records each status and
    body, or the connection error."""
    for _ in range(max_requests):
        if stop.is_set():
            return
        try:
            r = requests.post(url, json=body, timeout=30)
            results.append((r.status_code, r.json()))
        except requests.ConnectionError as e:
            results.append(("connection", str(e)))


def test_repository_index_unload_load_and_replace_under_traffic(start_server, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lifecycle")
    (repo / "digits").symlink_to(require(MODELS["digits"]), target_is_directory=True)
    # Overload shedding (503 while the front lags) is tested on its own; on a busy machine it would
    # blur the answers this test is about: 200 before an unload, 404 after.
    server = start_server("--threads", "1", "--max-front-lag-ms", "60000", repo=repo)
    c = httpclient.InferenceServerClient(url=server.http)
    x = np.linspace(0, 16, 64, dtype=np.float32).reshape(1, 64)
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}]}
    url = f"{server.url}/v2/models/digits/infer"
    expected = np.array(requests.post(url, json=body, timeout=10).json()["outputs"][0]["data"], dtype=np.float32)
    assert c.get_model_repository_index() == [{"name": "digits", "version": "1.0.0", "state": "READY", "reason": ""}]

    # Replace (load of a loaded model) twice under traffic from 3 clients: every reply is 200
    # with the same bits.
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=traffic, args=(url, body, stop, results)) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    c.load_model("digits")
    c.load_model("digits")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(60)
    assert len(results) > 10
    assert all(code == 200 for code, _ in results), [r for r in results if r[0] != 200][:3]
    assert all(same_bits(np.array(r["outputs"][0]["data"], dtype=np.float32), expected) for _, r in results)

    # Unload under traffic: each request is answered 200 before it, 404 after; none is lost.
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=traffic, args=(url, body, stop, results)) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    c.unload_model("digits")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(60)
    codes = [code for code, _ in results]
    assert set(codes) <= {200, 404}, [r for r in results if r[0] not in (200, 404)][:3]
    assert codes.count(200) >= 1 and codes[-1] == 404
    assert not c.is_model_ready("digits")
    index = c.get_model_repository_index()
    assert index == [{"name": "digits", "state": "UNAVAILABLE", "reason": "unloaded"}]

    c.load_model("digits")
    assert c.is_model_ready("digits")
    again = requests.post(url, json=body, timeout=10).json()["outputs"][0]["data"]
    assert same_bits(np.array(again, dtype=np.float32), expected)
    r = requests.post(f"{server.url}/v2/repository/models/../load", timeout=10)
    assert r.status_code == 404
    r = requests.post(f"{server.url}/v2/repository/models/absent/load", timeout=10)
    assert r.status_code == 404
    assert server.stop() == 0


def test_sigterm_answers_every_accepted_request_and_exits_0(start_server, tmp_path_factory):
    repo = tmp_path_factory.mktemp("drain")
    (repo / "wide-mlp").symlink_to(require(MODELS["wide-mlp"]), target_is_directory=True)
    server = start_server("--threads", "1", "--max-batch", "16", "--drain-delay-ms", "300", repo=repo)
    x = np.ones((16, 1024), dtype=np.float32)
    body = {"inputs": [{"name": "input", "shape": [16, 1024], "datatype": "FP32", "data": x.ravel().tolist()}]}
    url = f"{server.url}/v2/models/wide-mlp/infer"
    # Slow requests in flight when the signal arrives: 12 batches of 16 wide rows.
    with cf.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(requests.post, url, json=body, timeout=60) for _ in range(12)]
        time.sleep(0.2)
        server.process.send_signal(15)
        # Draining: not ready (within moments of the signal) while the accepted requests finish;
        # the drain delay keeps the listener open long enough to see it.
        for _ in range(20):
            ready = requests.get(f"{server.url}/v2/health/ready", timeout=5)
            if ready.status_code == 503:
                break
            time.sleep(0.01)
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        replies = [f.result() for f in futures]
    assert [r.status_code for r in replies] == [200] * 12
    first = replies[0].json()["outputs"][0]["data"]
    assert all(r.json()["outputs"][0]["data"] == first for r in replies)
    assert server.stop() == 0
    assert "drained" in server.log()


def test_client_disconnect_cancels_its_queued_request(start_server, tmp_path_factory):
    import json
    import re
    import socket

    repo = tmp_path_factory.mktemp("cancel")
    (repo / "wide-mlp").symlink_to(require(MODELS["wide-mlp"]), target_is_directory=True)
    server = start_server("--threads", "1", "--max-batch", "16", "--max-wait-us", "0", repo=repo)
    url = f"{server.url}/v2/models/wide-mlp/infer"
    big = {"inputs": [{"name": "input", "shape": [16, 1024], "datatype": "FP32", "data": [1.0] * 16 * 1024}]}
    one = json.dumps({"inputs": [{"name": "input", "shape": [1, 1024], "datatype": "FP32", "data": [1.0] * 1024}]}).encode()
    host, port = server.http.rsplit(":", 1)
    request = (f"POST /v2/models/wide-mlp/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(one)}\r\n\r\n").encode() + one
    def cancelled():
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        m = re.search(r'^densebatch_requests_cancelled_total\{model="wide-mlp"[^}]*\} (\d+)', text, re.M)
        return int(m.group(1)) if m else -1

    # Whether the slow batches are still ahead when the clients leave depends on the machine's
    # speed: up to three tries, each with more of them.
    for attempt in range(3):
        with cf.ThreadPoolExecutor(8) as pool:
            # Slow batches ahead of them in the queue.
            busy = [pool.submit(requests.post, url, json=big, timeout=60) for _ in range(4 * 2**attempt)]
            time.sleep(0.05)
            sockets = []
            for _ in range(6):
                s = socket.create_connection((host, int(port)), timeout=10)
                s.sendall(request)
                sockets.append(s)
            time.sleep(0.02)
            for s in sockets:
                s.close()  # gone before its request reached the model
            assert all(f.result().status_code == 200 for f in busy)
        for _ in range(20):
            if cancelled() >= 1:
                break
            time.sleep(0.1)
        if cancelled() >= 1:
            break
    assert cancelled() >= 1, requests.get(f"{server.url}/metrics", timeout=10).text
    assert server.stop() == 0
