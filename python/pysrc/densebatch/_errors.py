"""The exceptions densebatch raises. Every refusal of a submit hands the request back on
``e.request``; nothing a caller passed in is lost."""

from __future__ import annotations

from typing import Any

__all__ = [
    "DensebatchError",
    "LoadError",
    "InvalidInput",
    "SubmitRejected",
    "QueueFull",
    "SubmitTimeout",
    "ShuttingDown",
    "UnknownModel",
    "InvalidRequest",
    "DeadlineExceeded",
    "ModelFailed",
    "ModelPanicked",
    "RequestDropped",
    "SchedulerError",
    "InvalidConfig",
]


class DensebatchError(Exception):
    """Base class of every densebatch error."""

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        for name, value in attrs.items():
            setattr(self, name, value)


class LoadError(DensebatchError, ValueError):
    """A model file or its bytes are malformed, inconsistent or unsupported."""


class InvalidInput(DensebatchError, ValueError):
    """An input does not fit the model: wrong width, or NaN/Inf the model refuses (then ``row``
    and ``col`` name the first bad value)."""

    row: int | None = None
    col: int | None = None


class SubmitRejected(DensebatchError):
    """A submit was refused; ``request`` is the array that was submitted."""

    request: Any = None


class QueueFull(SubmitRejected):
    """The model's queue is full (backpressure): retry later or shed load."""


class SubmitTimeout(SubmitRejected):
    """The queue stayed full for a whole submit timeout."""


class ShuttingDown(SubmitRejected):
    """The scheduler is shutting down."""


class UnknownModel(SubmitRejected, KeyError):
    """No model of that name is loaded."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidRequest(SubmitRejected, ValueError):
    """The request does not fit the model (width, NaN/Inf, or more rows than max_batch_size)."""


class DeadlineExceeded(DensebatchError, TimeoutError):
    """The request's deadline passed before it was computed; it was not computed."""


class ModelFailed(DensebatchError):
    """The model returned an error for this request."""


class ModelPanicked(DensebatchError):
    """The model panicked while computing this request's batch; its worker was restarted."""


class RequestDropped(DensebatchError):
    """The request was dropped unanswered (a bug: report it)."""


class SchedulerError(DensebatchError):
    """Loading, replacing or unloading a model failed."""


class InvalidConfig(SchedulerError, ValueError):
    """A scheduler or model setting is out of range."""
