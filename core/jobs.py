"""The one protocol for long work, shared by the CLI and the studio.

A job is any object with ``name`` and ``run(progress, cancel) -> result``. It reports
``Progress(fraction, message)`` through ``progress`` and calls ``cancel.check()`` between units of work;
a cancelled job raises :class:`Cancelled` and must leave what the user made as it was (write to
temporaries, rename at the end).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, TypeVar

T = TypeVar("T", covariant=True)


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1 of the whole job
    message: str = ""
    metrics: Mapping[str, float] | None = None  # training curves: {"step": 120, "loss": 0.3, ...}
    image: Any = None  # a preview the job offers now: uint8 [H,W,3] RGB (numpy), shown by the studio


ProgressFn = Callable[[Progress], None]


class Cancelled(Exception):
    """Raised inside a job when its CancelToken was set."""

    def __init__(self, job: str = "job"):
        super().__init__(f"{job} was cancelled")


class CancelToken:
    """Thread-safe cancellation flag, set by the caller and polled by the job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, job: str = "job") -> None:
        if self._event.is_set():
            raise Cancelled(job)


class Job(Protocol, Generic[T]):
    name: str

    def run(self, progress: ProgressFn, cancel: CancelToken) -> T: ...


def span(progress: ProgressFn, start: float, stop: float) -> ProgressFn:
    """Map a sub-step's 0..1 progress onto [start, stop] of the parent job's progress."""

    def report(p: Progress) -> None:
        progress(Progress(start + (stop - start) * min(max(p.fraction, 0.0), 1.0), p.message, p.metrics, p.image))

    return report


def run_job(job: Job[T], progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> T:
    """Run a job in the calling thread (tests, scripts); the CLI and studio add bars and threads."""
    return job.run(progress or (lambda p: None), cancel or CancelToken())
