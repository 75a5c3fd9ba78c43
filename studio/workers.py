"""The one bridge from core jobs to Qt: run a job on the thread pool, deliver progress, training metrics,
preview images, result, error and cancellation back on the UI thread as signals. The UI thread never waits on a job."""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

from core.jobs import Cancelled, CancelToken, Job, Progress


class JobWorker(QObject):
    """One running job. Signals arrive on the thread that created the worker (the UI thread)."""

    progress = Signal(float, str)   # fraction 0..1, message
    metrics = Signal(object)        # dict[str, float] of one Progress that carried metrics; never throttled
    image = Signal(object)          # uint8 [H,W,3] preview of one Progress that carried an image; never throttled
    finished = Signal(object)       # the job's result
    errored = Signal(object)        # the exception (its __traceback__ kept, for the log)
    cancelled = Signal()
    done = Signal()                 # always last, whichever of the three above came

    _live: set["JobWorker"] = set()  # keeps running workers alive until done
    _MIN_INTERVAL = 1 / 30           # progress is throttled to what a bar can show

    def __init__(self, job: Job[Any]):
        super().__init__()
        self.job = job
        self.token = CancelToken()
        self._last_emit = 0.0

    @property
    def name(self) -> str:
        return self.job.name

    def cancel(self) -> None:
        self.token.cancel()

    def _report(self, p: Progress) -> None:
        if p.metrics is not None:  # every point of a training curve arrives, whatever the bar's throttle
            self.metrics.emit(dict(p.metrics))
        if p.image is not None:
            self.image.emit(p.image)
        now = time.monotonic()
        if p.fraction >= 1.0 or now - self._last_emit >= self._MIN_INTERVAL:
            self._last_emit = now
            self.progress.emit(float(p.fraction), p.message)

    def _run(self) -> None:  # worker thread
        try:
            result = self.job.run(self._report, self.token)
        except Cancelled:
            self.cancelled.emit()
        except Exception as e:  # noqa: BLE001 - every error reaches the UI, none is lost in a thread
            self.errored.emit(e)
        else:
            self.finished.emit(result)
        finally:
            self.done.emit()


def start_job(
    job: Job[Any],
    *,
    on_progress: Callable[[float, str], None] | None = None,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
    on_image: Callable[[Any], None] | None = None,
    on_finished: Callable[[Any], None] | None = None,
    on_errored: Callable[[Exception], None] | None = None,
    on_cancelled: Callable[[], None] | None = None,
    pool: QThreadPool | None = None,
) -> JobWorker:
    """Start ``job`` on a pool thread and wire its signals to the given callbacks (UI thread)."""
    worker = JobWorker(job)
    queued = Qt.ConnectionType.QueuedConnection  # plain callables too run on the UI thread, never the pool's
    for signal, slot in ((worker.progress, on_progress), (worker.metrics, on_metrics), (worker.image, on_image),
                         (worker.finished, on_finished), (worker.errored, on_errored),
                         (worker.cancelled, on_cancelled)):
        if slot is not None:
            signal.connect(slot, queued)
    JobWorker._live.add(worker)
    worker.done.connect(lambda: JobWorker._live.discard(worker), queued)
    (pool or QThreadPool.globalInstance()).start(QRunnable.create(worker._run))
    return worker


class JobRunner(QObject):
    """The studio's one job at a time. Panels and menus ask it to run a job with their own callbacks; everyone
    else (the status bar, the menus, the stage statuses) listens to its signals, so no window wires a panel."""

    started = Signal(str)          # the job's name
    progress = Signal(float, str)  # fraction 0..1, message (throttled)
    failed = Signal(str, object)   # the job's name, the exception: shown to the user by the window
    cancelled = Signal(str)        # the job's name
    ended = Signal(str)            # the job's name, after whichever outcome and after the caller's callback
    refused = Signal(str)          # why a job was not started (another one runs)

    def __init__(self, pool: QThreadPool | None = None) -> None:
        super().__init__()
        self.worker: JobWorker | None = None
        self._pool = pool

    @property
    def pausable(self) -> bool:
        """Whether the running job can hold between steps (it has a ``pause`` event)."""
        return self.worker is not None and hasattr(self.worker.job, "pause")

    @property
    def paused(self) -> bool:
        return self.pausable and self.worker.job.pause.is_set()

    def run(self, job: Job[Any], *, on_finished: Callable[[Any], None] | None = None,
            on_errored: Callable[[Exception], None] | None = None,
            on_cancelled: Callable[[], None] | None = None,
            on_progress: Callable[[float, str], None] | None = None,
            on_metrics: Callable[[dict[str, float]], None] | None = None,
            on_image: Callable[[Any], None] | None = None) -> JobWorker | None:
        """Start ``job`` unless one runs (then ``refused`` says which, and None is returned). The caller's outcome
        callback runs first, after the runner is free, so it may start the next job."""
        if self.worker is not None:
            self.refused.emit(f"Wait for '{self.worker.name}' to finish (or cancel it) first.")
            return None

        def end(slot: Callable[..., None] | None, signal: Any = None):
            def call(*args: Any) -> None:
                name = self.worker.name if self.worker is not None else job.name
                self.worker = None
                if signal is not None:
                    signal.emit(name, *args)
                if slot is not None:
                    slot(*args)
                self.ended.emit(name)
            return call

        def progress(fraction: float, message: str) -> None:
            self.progress.emit(fraction, message)
            if on_progress is not None:
                on_progress(fraction, message)

        self.worker = start_job(job, on_progress=progress, on_metrics=on_metrics, on_image=on_image,
                                on_finished=end(on_finished), on_errored=end(on_errored, self.failed),
                                on_cancelled=end(on_cancelled, self.cancelled), pool=self._pool)
        self.started.emit(job.name)
        return self.worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()  # a held job ends too: its pause gives way to a cancel

    def set_paused(self, paused: bool) -> None:
        """Hold the running job between steps, or let it go on; nothing is lost either way."""
        if self.pausable:
            (self.worker.job.pause.set if paused else self.worker.job.pause.clear)()
