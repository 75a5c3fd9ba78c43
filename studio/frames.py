"""Decodes frames off the UI thread: the newest request wins, so scrubbing never queues stale work."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal

from core.media import FrameReader


class FrameFetcher(QObject):
    """``request(i)`` asks for frame i of the current reader; ``frame_ready(i, rgb)`` answers on the UI thread."""

    frame_ready = Signal(int, object)   # index, uint8 [H,W,3]
    failed = Signal(int, str)           # index, message

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._reader: FrameReader | None = None
        self._pending: int | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="frame-fetcher", daemon=True)
        self._thread.start()

    def connect_ready(self, slot) -> None:
        self.frame_ready.connect(slot, Qt.ConnectionType.QueuedConnection)

    def set_reader(self, reader: FrameReader | None) -> None:
        with self._cond:
            self._reader, self._pending = reader, None

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
                index, reader, self._pending = self._pending, self._reader, None
            if reader is None:
                continue
            try:
                frame: np.ndarray = reader.read(index)
            except Exception as e:  # noqa: BLE001 - shown in the status bar, playback goes on
                self.failed.emit(index, str(e))
            else:
                self.frame_ready.emit(index, frame)
