"""Shared fixtures: the bundled models, the reference-harness models (made by tests/run.sh) and
seeded random models. Under CI a missing input fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import densebatch

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "models"
REFERENCE = REPO / "target" / "refbench" / "models"


def require(path: Path) -> Path:
    """`path`, or a failure (under CI) / skip (locally) saying how to make it."""
    if path.exists():
        return path
    message = f"{path} is missing: run tests/run.sh once to make the reference models"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float32 array, for bit-for-bit comparisons (NaN-safe, -0.0-aware)."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.fixture(scope="session")
def digits_dir() -> Path:
    return require(BUNDLED / "digits")


@pytest.fixture(scope="session")
def digits_test(digits_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(digits_dir / "test.safetensors"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return require(REFERENCE)


@pytest.fixture(scope="session")
def small_model() -> densebatch.Model:
    return densebatch.Model.random([24, 40, 33, 7], hidden="relu", output="softmax", seed=5)


def rows(n: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, width), dtype=np.float32)
