"""Audio playback through sounddevice, driving the playback clock. Where no output device exists
(servers, CI, a missing PortAudio), it stays silent and says why; playback then runs on the wall clock."""

from __future__ import annotations

import threading

import numpy as np


class AudioOutput:
    """Plays a mono float32 buffer from a position; ``position()`` is the clock playback follows."""

    def __init__(self) -> None:
        self.unavailable_reason: str | None = None
        self._sd = None
        try:
            import sounddevice as sd

            sd.query_devices(kind="output")  # raises when there is no default output device
            self._sd = sd
        except Exception as e:  # noqa: BLE001 - OSError (no PortAudio) or PortAudioError (no device)
            self.unavailable_reason = f"no audio output device ({str(e).strip() or type(e).__name__})"
        self._stream = None
        self._lock = threading.Lock()
        self._audio = np.zeros(0, np.float32)  # [S]
        self._rate = 16000
        self._pos = 0  # next sample to play

    @property
    def available(self) -> bool:
        return self._sd is not None

    def play(self, audio: np.ndarray, rate: int, start_sample: int) -> bool:
        """Start playing ``audio`` [S] from ``start_sample``; False (and a reason) when it cannot."""
        self.stop()
        if self._sd is None:
            return False
        with self._lock:
            self._audio, self._rate, self._pos = audio, rate, max(0, int(start_sample))
        try:
            self._stream = self._sd.OutputStream(samplerate=rate, channels=1, dtype="float32",
                                                 callback=self._callback)
            self._stream.start()
        except Exception as e:  # noqa: BLE001 - device busy, unsupported rate: play silently
            self._stream = None
            self.unavailable_reason = f"audio output failed ({e})"
            return False
        return True

    def _callback(self, out: np.ndarray, frames: int, _time, _status) -> None:  # audio thread
        with self._lock:
            chunk = self._audio[self._pos:self._pos + frames]
            self._pos += frames
        out[: len(chunk), 0] = chunk
        out[len(chunk):, 0] = 0.0

    def position(self) -> float | None:
        """Seconds of audio played so far (the playback clock), or None when not playing."""
        if self._stream is None:
            return None
        with self._lock:
            pos = self._pos
        latency = float(self._stream.latency or 0.0)
        return max(0.0, pos / self._rate - latency)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.abort()
            self._stream.close()
            self._stream = None
