"""Makes frames off the UI thread: the newest request wins, so scrubbing and playback never queue stale work.
The footage's decoded frames use it, and so does the viewport's avatar (its Gaussians per frame)."""

from __future__ import annotations

import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal

from core.media import FrameReader


class FrameFetcher(QObject):
    """``request(i)`` asks the current source for frame i; ``frame_ready(i, value)`` answers on the UI thread.
    A source is any ``index -> value`` callable (a reader's ``read``); it runs on the fetcher's thread only."""

    frame_ready = Signal(int, object)   # index, what the source made (uint8 [H,W,3] for footage)
    failed = Signal(int, str)           # index, message

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._source: Callable[[int], Any] | None = None
        self._generation = 0                # bumped by set_source: answers of an older source are dropped
        self._pending: int | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="frame-fetcher", daemon=True)
        self._thread.start()

    def connect_ready(self, slot) -> None:
        self.frame_ready.connect(slot, Qt.ConnectionType.QueuedConnection)

    def set_reader(self, reader: FrameReader | None) -> None:
        self.set_source(reader.read if reader is not None else None)

    def set_source(self, source: Callable[[int], Any] | None) -> None:
        with self._cond:
            self._source, self._pending = source, None
            self._generation += 1

    def request(self, index: int) -> None:
        with self._cond:
            self._pending = index
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=2)

    def _loop(self) -> None:  # fetcher thread
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                index, source, generation, self._pending = self._pending, self._source, self._generation, None
            if source is None:
                continue
            try:
                value = source(index)
            except Exception as e:  # noqa: BLE001 - shown to the user, playback goes on
                self.failed.emit(index, str(e))
                continue
            with self._cond:
                if generation != self._generation:
                    continue
            self.frame_ready.emit(index, value)
