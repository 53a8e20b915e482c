"""Dask arrays: ``predict_array(model, x)`` maps ``model.predict`` over row blocks.

Dask's threaded scheduler suits densebatch: ``predict`` releases the GIL, so compile the model
with ``threads=1`` and let Dask's threads give the parallelism (one process, no pickling).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import CompiledModel


def predict_array(model: CompiledModel, x: Any) -> Any:
    """``[rows, input_width]`` float32 Dask array → ``[rows, output_width]``, lazily."""
    if x.ndim != 2 or x.shape[1] != model.input_width:
        raise ValueError(
            f"expected a [rows, {model.input_width}] array; got shape {tuple(x.shape)}"
        )
    if len(x.chunks[1]) != 1:
        x = x.rechunk({1: -1})
    return x.map_blocks(
        model.predict,
        chunks=(x.chunks[0], (model.output_width,)),
        dtype=np.float32,
    )
