"""Scale-out on Ray: offline batch inference with Ray Data and online serving with Ray Serve.

``BatchPredictor`` is the callable class for ``Dataset.map_batches``: each actor builds its
model once (models pickle as spec + weight bytes, so a ``CompiledModel`` can be passed as is) and
runs on its own CPUs. ``deployment`` wraps a model in a Ray Serve deployment whose replicas batch
requests with densebatch's own scheduler (deadlines, backpressure, per-batch records).
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np

from . import CompiledModel, Scheduler, load


def _compiled(model: CompiledModel | str | PathLike[str], threads: int | None) -> CompiledModel:
    if isinstance(model, CompiledModel):
        if threads is None:
            return model
        return model.recompile(threads=threads, precision=model.precision)
    return load(model, threads=threads)


class BatchPredictor:
    """``ds.map_batches(BatchPredictor, fn_constructor_kwargs={"model": m}, batch_format="numpy",
    compute=ray.data.ActorPoolStrategy(size=n), num_cpus=1)``.

    Reads the ``input_column`` of each numpy batch (read-only, zero-copy batches are fine) and adds
    ``output_column``. ``threads=None`` takes the actor's CPUs (Ray sets ``OMP_NUM_THREADS``).
    """

    def __init__(
        self,
        model: CompiledModel | str | PathLike[str],
        threads: int | None = None,
        input_column: str = "data",
        output_column: str = "y",
    ) -> None:
        self.model = _compiled(model, threads)
        self.input_column = input_column
        self.output_column = output_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(batch[self.input_column])
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        out = dict(batch)
        out[self.output_column] = self.model.predict(x)
        return out


def predict_dataset(
    dataset: Any,
    model: CompiledModel | str | PathLike[str],
    *,
    actors: int = 2,
    threads_per_actor: int = 1,
    batch_size: int = 512,
    input_column: str = "data",
    output_column: str = "y",
) -> Any:
    """``dataset.map_batches`` over a pool of ``actors`` actors of ``threads_per_actor`` CPUs."""
    import ray.data

    return dataset.map_batches(
        BatchPredictor,
        fn_constructor_kwargs={
            "model": model,
            "threads": threads_per_actor,
            "input_column": input_column,
            "output_column": output_column,
        },
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=threads_per_actor,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )


class ServeModel:
    """The body of a Ray Serve replica: one densebatch ``Scheduler`` batching every request the
    replica receives. A request is an array (or nested list) of one or more rows, or an HTTP
    request whose JSON body is ``{"inputs": [[...], ...]}``."""

    def __init__(
        self,
        model: CompiledModel | str | PathLike[str],
        threads: int | None = None,
        max_batch_size: int = 32,
        max_wait_s: float = 0.002,
        queue_capacity: int = 1024,
        timeout_s: float | None = None,
    ) -> None:
        compiled = _compiled(model, 1)
        self.scheduler = Scheduler(threads=threads)
        self.scheduler.load(
            "model",
            compiled,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            queue_capacity=queue_capacity,
        )
        self.timeout_s = timeout_s

    async def __call__(self, request: Any) -> Any:
        from_http = hasattr(request, "json") and callable(request.json)
        if from_http:
            request = (await request.json())["inputs"]
        x = np.asarray(request, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        y = await self.scheduler.submit_async("model", x, timeout_s=self.timeout_s)
        return {"outputs": y.tolist()} if from_http else y

    def metrics(self) -> dict[str, Any]:
        return self.scheduler.metrics()


def deployment(
    model: CompiledModel | str | PathLike[str],
    *,
    num_cpus: float = 1,
    max_ongoing_requests: int = 256,
    **scheduler_options: Any,
) -> Any:
    """A bound Ray Serve application serving ``model``: ``serve.run(deployment(m))``.

    ``max_ongoing_requests`` is raised from Serve's default of 5 so the scheduler's batches can
    fill; ``scheduler_options`` go to ``ServeModel``.
    """
    from ray import serve

    threads = max(1, int(num_cpus))
    app = serve.deployment(
        ServeModel,
        name="densebatch",
        ray_actor_options={"num_cpus": num_cpus},
        max_ongoing_requests=max_ongoing_requests,
    )
    return app.bind(model, threads=threads, **scheduler_options)
