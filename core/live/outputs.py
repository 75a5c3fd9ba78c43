"""Where live frames go besides the screen: a recorded take (H.264 + AAC mp4 and the ARKit CSV of what drove it)
and a virtual camera other applications can select as a webcam."""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from core import __version__
from core.dub import check_output
from core.expression.arkit_csv import from_mediapipe, write_csv
from core.media import AUDIO_RATE, AudioBuffer, VideoWriter

RECORD_PRESET = "veryfast"    # x264's speed: a live take is encoded while the avatar renders
RECORD_CRF = 20


class TakeRecorder:
    """A take of the frames whose sound arrived while recording: frames ``first`` .. ``last`` (``end`` sets the
    last), each as shown (a dropped one repeats the frame before, so the picture stays with its sound), the input's
    sound from the first frame's time, and each frame's blendshapes. The mp4 is encoded on a thread of its own as
    frames come and appears at ``close``; an error on the way keeps what was recorded up to it."""

    def __init__(self, mp4: Path, csv: Path | None, fps: Fraction, size: tuple[int, int], project: str, source: str,
                 first: int):
        check_output(mp4, [])
        if csv is not None and (csv.suffix.lower() != ".csv" or not csv.parent.is_dir()):
            raise ValueError(f"{csv} is not a .csv file in an existing folder")
        self.mp4, self.csv, self.fps, self.first = mp4, csv, fps, first
        self.last: int | None = None          # set by ``end``
        self.closing = False                  # a thread is ending it (LiveSession.stop_recording)
        self._closed = False                  # no frame is taken any more
        self._lock = threading.Lock()
        self._begin = round(first / fps * AUDIO_RATE)   # the take's first sample (stream sample number)
        self._sound = AudioBuffer()
        self._frames = 0
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._rows: list[np.ndarray] = []
        self._complete = threading.Event()
        metadata = {
            "comment": f"Synthetic video: the face and lips were generated live by Avatar Studio {__version__} from "
                       f"{source}",
            "synthetic": "true",
            "generator": f"Avatar Studio {__version__}",
            "avatar_studio": json.dumps({"project": project, "live_input": source}, sort_keys=True),
        }
        self._writer = VideoWriter(mp4, fps, size, self._sound, AUDIO_RATE, RECORD_CRF, RECORD_PRESET, metadata)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode, name="live-take", daemon=True)
        self._thread.start()

    @property
    def seconds(self) -> float:
        return self._frames / float(self.fps)

    def add_audio(self, chunk: np.ndarray, start: int) -> None:
        """The input's samples ``start ..`` (stream sample numbers), from the input's thread."""
        if start + len(chunk) > self._begin:
            self._sound.append(chunk[max(self._begin - start, 0):])

    def add_frame(self, k: int, image: np.ndarray | None, blendshapes: np.ndarray | None) -> None:
        """Frame ``k`` as shown, or None for a frame dropped (the one before is repeated in its place)."""
        with self._lock:
            if self._closed or k < self.first or (self.last is not None and k > self.last):
                return
            while self._previous is not None and self.first + self._frames < k:   # frames that never came
                self._put(*self._previous)
            if image is not None:
                self._put(image, blendshapes)
            elif self._previous is not None:
                self._put(*self._previous)
            if self.last is not None and self.first + self._frames > self.last:
                self._complete.set()

    def end(self, last: int) -> None:
        """The take ends with frame ``last`` (or before, when an earlier end was set)."""
        last = max(last, self.first - 1)
        self.last = last if self.last is None else min(last, self.last)
        if self.first + self._frames > self.last:
            self._complete.set()

    @property
    def complete(self) -> bool:
        """The frames up to ``last`` are in."""
        return self._complete.is_set()

    def wait(self, timeout: float) -> bool:
        """Until the frames up to ``last`` are in; True when they are."""
        return self._complete.wait(timeout)

    def _put(self, image: np.ndarray, blendshapes: np.ndarray) -> None:
        self._previous = (image, blendshapes)
        self._rows.append(blendshapes)
        self._frames += 1
        self._queue.put(image)

    def _encode(self) -> None:
        while (image := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(image)
                except BaseException as e:   # a full disk: stop encoding, report at close
                    self._error = e

    def close(self) -> list[Path]:
        """Finish the files (the mp4's sound cut at its last frame); the paths written. The error that stopped
        the encoding, if any, is raised after the rest is kept."""
        with self._lock:
            self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._sound.finish(round(self._frames / self.fps * AUDIO_RATE))
        written: list[Path] = []
        if self._error is None and self._frames:
            written.append(self._writer.close())
        else:
            self._writer.abort()
        if self.csv is not None and self._rows:
            write_csv(self.csv, from_mediapipe(np.stack(self._rows)), self.fps)
            written.append(self.csv)
        if self._error is not None:
            raise self._error
        return written


class Monitor:
    """The input's sound played back as it arrives (headphones: the speaker hears what the avatar hears)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._pending: deque[np.ndarray] = deque(maxlen=50)   # at most half a second waits to be played
        self._lock = threading.Lock()

    @classmethod
    def open(cls) -> tuple[Monitor | None, str]:
        """The monitor on the default output, or None and why there is none."""
        from core.live.input import LiveInputError, _sounddevice

        try:
            sd = _sounddevice()
            monitor = cls(None)
            monitor._stream = sd.OutputStream(samplerate=AUDIO_RATE, channels=1, dtype="float32", blocksize=160,
                                              callback=monitor._fill)
            monitor._stream.start()
            return monitor, ""
        except LiveInputError as e:
            return None, f"no monitor: {e}"
        except Exception as e:  # sounddevice.PortAudioError: no output device
            return None, f"no monitor: no sound output ({e})"

    def play(self, chunk: np.ndarray) -> None:
        with self._lock:
            self._pending.append(chunk)

    def _fill(self, outdata, frames, time_info, status) -> None:  # PortAudio's thread
        out = outdata[:, 0]
        filled = 0
        with self._lock:
            while filled < frames and self._pending:
                chunk = self._pending.popleft()
                take = min(len(chunk), frames - filled)
                out[filled:filled + take] = chunk[:take]
                if take < len(chunk):
                    self._pending.appendleft(chunk[take:])
                filled += take
        out[filled:] = 0.0

    def close(self) -> None:
        try:
            self._stream.stop()
            self._stream.close()
        except Exception:  # a device gone already
            pass


class VirtualCamera:
    """Frames out as a webcam (pyvirtualcam: v4l2loopback on Linux, OBS's camera on Windows and macOS)."""

    def __init__(self, camera):
        self._camera = camera
        self.device = camera.device

    @classmethod
    def open(cls, size: tuple[int, int], fps: float) -> tuple[VirtualCamera | None, str]:
        """The camera, or None and why there is none."""
        try:
            import pyvirtualcam
        except ImportError:
            return None, "no virtual camera: pyvirtualcam is not installed"
        try:
            return cls(pyvirtualcam.Camera(size[0], size[1], fps, fmt=pyvirtualcam.PixelFormat.RGB)), ""
        except RuntimeError as e:
            return None, (f"no virtual camera ({e}); on Linux load v4l2loopback (sudo modprobe v4l2loopback), on "
                          "Windows or macOS install OBS Studio and start its virtual camera once")

    def send(self, frame: np.ndarray) -> None:
        self._camera.send(frame)

    def close(self) -> None:
        self._camera.close()
