"""Rebuilding pickled models (spec + weight bytes), so Ray, Dask and multiprocessing can ship
them. ``threads=None`` resolves again where the model lands."""

from __future__ import annotations

from ._densebatch import CompiledModel, Model


def compiled_model(
    spec: bytes,
    weights: bytes,
    threads: int | None,
    kernel: str | None,
    non_finite: str,
    precision: str = "f32",
) -> CompiledModel:
    model = Model.from_bytes(spec, weights)
    return model.compile(
        threads=threads, kernel=kernel, non_finite=non_finite, precision=precision
    )
