"""Transport: play/pause, frame steps and J/K/L shuttle, timed by the audio clock when sound plays
and by the monotonic clock otherwise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from studio.audio_io import AudioOutput

if TYPE_CHECKING:  # the state owns its transport
    from studio.state import StudioState

SHUTTLE_SPEEDS = (1.0, 2.0, 4.0, 8.0)
# The audio clock is trusted while it stays this close to the wall clock; a device that runs free (ALSA's
# null or file sinks) or stalls would otherwise race or freeze the picture.
MAX_CLOCK_DRIFT_S = 0.5


class Playback(QObject):
    speed_changed = Signal(float)
    notice = Signal(str)  # e.g. "playing silently: no audio output device"

    def __init__(self, state: StudioState, audio: AudioOutput | None = None):
        super().__init__()
        self.state = state
        self.audio = audio or AudioOutput()
        self.speed = 0.0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._t0 = 0.0
        self._frame0 = 0
        self._audio_clock = False
        state.footage_changed.connect(self.stop)

    # --- transport -----------------------------------------------------------------------------
    def toggle(self) -> None:
        self.stop() if self.state.playing else self.play(1.0)

    def play(self, speed: float = 1.0) -> None:
        fp = self.state.footage
        if fp is None or speed == 0:
            return
        self._stop_clock()
        if speed > 0 and self.state.frame >= fp.frame_count - 1:
            self.state.set_frame(0)  # play from the start when parked at the end
        self.speed = speed
        self._frame0 = self.state.frame
        self._t0 = time.monotonic()
        self._audio_clock = False
        if speed == 1.0:
            start = int(round(self._frame0 / float(fp.fps) * fp.audio_rate))
            self._audio_clock = self.audio.play(fp.audio, fp.audio_rate, start)
            if not self._audio_clock:
                self.notice.emit(f"Playing silently: {self.audio.unavailable_reason}")
        self._timer.start(max(5, int(500 / float(fp.fps))))  # twice per frame
        self.state.set_playing(True)
        self.speed_changed.emit(speed)

    def stop(self) -> None:
        self._stop_clock()
        if self.speed != 0.0:
            self.speed = 0.0
            self.speed_changed.emit(0.0)
        self.state.set_playing(False)

    def step(self, frames: int) -> None:
        self.stop()
        self.state.set_frame(self.state.frame + frames)

    def shuttle(self, direction: int) -> None:
        """J (-1) / L (+1), as in editing tools: from a stop or the other direction play at 1x that way;
        each further press in the same direction doubles the speed, up to 8x."""
        if self.speed == 0 or (self.speed > 0) != (direction > 0):
            self.play(float(direction))
            return
        faster = [s for s in SHUTTLE_SPEEDS if s > abs(self.speed)]
        self.play(direction * (faster[0] if faster else SHUTTLE_SPEEDS[-1]))

    # --- clock ---------------------------------------------------------------------------------
    def _stop_clock(self) -> None:
        self._timer.stop()
        self.audio.stop()

    def _elapsed(self) -> float:
        wall = time.monotonic() - self._t0
        if self._audio_clock:
            pos = self.audio.position()
            fp = self.state.footage
            if pos is not None and fp is not None:
                heard = pos - self._frame0 / float(fp.fps)
                if abs(heard - wall) < MAX_CLOCK_DRIFT_S:
                    return heard
            self._audio_clock = False
            self.notice.emit("The audio device's clock is unreliable: the picture follows the system clock")
        return wall

    def _tick(self) -> None:
        fp = self.state.footage
        if fp is None:
            self.stop()
            return
        target = self._frame0 + int(self._elapsed() * float(fp.fps) * self.speed)
        last = fp.frame_count - 1
        if target >= last or target <= 0 and self.speed < 0:
            self.state.set_frame(min(max(target, 0), last))
            self.stop()
            return
        self.state.set_frame(target)
