"""densebatch: parallel batch inference for dense neural networks (MLPs) on CPUs.

``load(path)`` gives a compiled model whose ``predict`` releases the GIL, reads numpy's buffer in
place and gives bit-identical rows whatever the batch, the row's position or the thread count.
``Scheduler`` batches requests from many callers with deadlines and backpressure and answers with
``concurrent.futures.Future``s (``submit_async`` for asyncio).
"""

from __future__ import annotations

import asyncio
import atexit
import weakref
from typing import Any

import numpy as np

from . import _errors
from ._densebatch import (
    CompiledModel,
    Model,
    __version__,
    default_threads,
    load,
    supported_kernels,
)
from ._densebatch import Scheduler as _NativeScheduler
from ._errors import *  # noqa: F403

__all__ = [
    "CompiledModel",
    "Model",
    "Scheduler",
    "batch_inference",
    "default_threads",
    "load",
    "supported_kernels",
    "__version__",
    *_errors.__all__,
]

_live_schedulers: weakref.WeakSet[Scheduler] = weakref.WeakSet()


class Scheduler(_NativeScheduler):
    """Batches requests for loaded models; see ``submit`` and ``submit_async``.

    Use it as a context manager, or call ``shutdown()``: it answers every accepted request
    exactly once. Schedulers still running at interpreter exit are shut down then.
    """

    def __init__(self, *, threads: int | None = None, record_ring: int = 1024) -> None:
        _live_schedulers.add(self)

    async def submit_async(
        self, name: str, x: np.ndarray, *, timeout_s: float | None = None
    ) -> np.ndarray:
        """``await``-able ``submit``: cancelling the awaiting task cancels the request."""
        return await asyncio.wrap_future(self.submit(name, x, timeout_s=timeout_s))


@atexit.register
def _shutdown_schedulers() -> None:
    for scheduler in list(_live_schedulers):
        scheduler.shutdown()


def batch_inference(model: Any, features: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Runs ``features`` through ``model`` ``batch_size`` rows at a time, into one output array.

    The result is bit-identical to ``model.predict(features)``: a row's output does not depend on
    the batch it is computed in.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise ValueError("features must be a 2-D numpy array [rows, input_width]")
    out = np.empty((features.shape[0], model.output_width), dtype=np.float32)
    for start in range(0, features.shape[0], batch_size):
        stop = start + batch_size
        model.predict(features[start:stop], out=out[start:stop])
    return out
