"""Fixtures for the network tests: the real `densebatch serve` binary on 127.0.0.1, driven by the
real clients from PyPI. Every server is started on free ports, polled until ready (bounded), and
stopped with SIGTERM, which must end it with exit status 0."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DENSEBATCH_BIN", ROOT / "target" / "debug" / "densebatch"))
REFBENCH = ROOT / "target" / "refbench" / "models"
MODELS = {
    "mnist-mlp": REFBENCH / "mnist-mlp",
    "wide-mlp": REFBENCH / "wide-mlp",
    "digits": ROOT / "models" / "digits",
}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def require(path: Path) -> Path:
    # A missing input fails rather than skips: a skipped server test proves nothing.
    if not path.exists():
        pytest.fail(f"{path} is missing: run tests/run.sh (it builds the binary and the models)")
    return path


class Server:
    """One `densebatch serve` process with its HTTP and gRPC addresses."""

    def __init__(self, repository: Path, *args: str):
        require(BIN)
        self.process = subprocess.Popen(
            [str(BIN), "serve", "--model-repository", str(repository), "--host", "127.0.0.1",
             "--http-port", "0", "--grpc-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.output: list[str] = []
        listening = threading.Event()

        def read():
            for line in self.process.stdout:
                self.output.append(line)
                if line.startswith("listening:"):
                    listening.set()
            listening.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not listening.wait(START_TIMEOUT_S):
            self.kill()
            pytest.fail(f"server did not bind within {START_TIMEOUT_S} s: {self.log()}")
        match = next((re.match(r"listening: http (\S+) grpc (\S+)", l) for l in self.output
                      if l.startswith("listening:")), None)
        if match is None:
            self.kill()
            pytest.fail(f"server exited at start: {self.log()}")
        self.http, self.grpc = match.group(1), match.group(2)
        self.url = f"http://{self.http}"
        self.wait_ready()

    def log(self) -> str:
        return "".join(self.output)

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                r = requests.get(f"{self.url}/v2/health/ready", timeout=2)
                if r.status_code == 200 and r.json() == {"ready": True}:
                    return
                assert r.status_code == 503 and r.json() == {"ready": False}, r.text
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"server not ready within {START_TIMEOUT_S} s: {self.log()}")

    def stop(self) -> int:
        """SIGTERM, then the exit status (which must come within the bound)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {STOP_TIMEOUT_S} s of SIGTERM: {self.log()}")
        self.reader.join(5)
        return code

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    """A model repository folder: one subfolder per model (links to the real ones)."""
    repo = tmp_path_factory.mktemp("repo")
    for name, path in MODELS.items():
        (repo / name).symlink_to(require(path), target_is_directory=True)
    return repo


@pytest.fixture(scope="session")
def start_server(repository):
    """Starts servers over `repository`; each still running at the end must exit 0 on SIGTERM."""
    started = []

    def start(*args: str, repo: Path | None = None) -> Server:
        server = Server(repo or repository, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            assert server.stop() == 0, server.log()


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    """The shared server: every model, one compute thread, 1 MB body limit."""
    return start_server("--threads", "1", "--max-body-bytes", "1000000", "--max-batch", "64")


def session_outputs(tmp_path_factory, model: str, x: np.ndarray, precision: str = "f32") -> np.ndarray:
    """The model's outputs for `x` from the library's own batch path, via `densebatch run`."""
    folder = tmp_path_factory.mktemp("expected")
    np.save(folder / "x.npy", x)
    subprocess.run([str(require(BIN)), "run", str(MODELS[model]), "--input", str(folder / "x.npy"),
                    "--output", str(folder / "y.npy"), "--batch", "7", "--precision", precision],
                   check=True, capture_output=True, timeout=120)
    return np.load(folder / "y.npy")


@pytest.fixture(scope="session")
def mnist_rows(tmp_path_factory):
    """40 mnist-mlp rows and their expected outputs (computed in batches of 7, so a match also
    shows batch-size independence)."""
    rng = np.random.default_rng(24)
    x = rng.standard_normal((40, 784)).astype(np.float32)
    return x, session_outputs(tmp_path_factory, "mnist-mlp", x)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and bool((a.view(np.uint32) == b.view(np.uint32)).all())
