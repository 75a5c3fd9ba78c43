"""Live sound in: a microphone (PortAudio through sounddevice) or a sound file paced in real time, both delivering
16 kHz mono chunks with the wall time each arrived, the same way, to the live session.

A source calls ``deliver(chunk float32 [S], arrived)`` from its own thread (PortAudio's callback, or the pacing
thread) and ``failed(message)`` once if it stops on its own (a device unplugged, a stream error); ``end()`` when a
file is over. ``arrived`` is ``time.perf_counter()`` when the chunk's last sample was in hand: what the live
session measures its latency from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from core.errors import AvatarStudioError
from core.media import AUDIO_RATE, load_audio, probe

BLOCK_S = 0.01           # a chunk: 10 ms of sound
STALL_S = 0.5            # a device that delivers nothing this long has stopped
SOUND_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".aif", ".aiff", ".mp4", ".mov",
                  ".mkv"}  # an input named so is a file (a device's name may hold a dot: "USB Audio 2.0")

Deliver = Callable[[np.ndarray, float], None]
Failed = Callable[[str], None]


class LiveInputError(AvatarStudioError):
    """The live input cannot start or has stopped: the message says which device and why."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    rate: float              # the device's default sample rate
    channels: int


def _sounddevice():
    """The sounddevice module, or LiveInputError when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when the PortAudio library is not installed
        raise LiveInputError(f"no audio input: PortAudio is not installed ({e}); on Debian/Ubuntu: "
                             "sudo apt-get install libportaudio2") from e
    return sounddevice


def input_devices() -> list[InputDevice]:
    """The machine's audio inputs (none when PortAudio is missing or finds none)."""
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
    except Exception:  # LiveInputError, or PortAudio's own errors, plain Exceptions (sounddevice.PortAudioError)
        return []
    return [InputDevice(i, d["name"], float(d["default_samplerate"]), int(d["max_input_channels"]))
            for i, d in enumerate(devices) if d["max_input_channels"] > 0]


def find_device(spec: str | int | None) -> InputDevice:
    """The input named (a substring of its name, case-insensitive) or numbered by ``spec``; the system's default
    input for None. LiveInputError listing what there is when nothing matches."""
    devices = input_devices()
    if not devices:
        raise LiveInputError("no audio input device found: connect a microphone (or give a .wav file to play as "
                             "if it were one)")
    if spec is None:
        sd = _sounddevice()
        default = sd.default.device[0] if isinstance(sd.default.device, (tuple, list)) else sd.default.device
        return next((d for d in devices if d.index == default), devices[0])
    text = str(spec).strip()
    matches = [d for d in devices if (text.isdigit() and d.index == int(text)) or text.lower() in d.name.lower()]
    if not matches:
        listed = "; ".join(f"{d.index}: {d.name}" for d in devices)
        raise LiveInputError(f"no audio input matches {text!r} (inputs: {listed})")
    return matches[0]


class AudioSource(Protocol):
    name: str

    def start(self, deliver: Deliver, failed: Failed, end: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class Resampler:
    """Mono float32 chunks at ``rate`` -> 16 kHz, chunk by chunk (swresample keeps its state between chunks)."""

    def __init__(self, rate: int):
        self.rate = rate
        self._av = None if rate == AUDIO_RATE else av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        self._pts = 0

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        if self._av is None:
            return chunk
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk, np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(chunk)
        out = [f.to_ndarray().reshape(-1) for f in self._av.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class DeviceSource:
    """A microphone: PortAudio's callback delivers 10 ms chunks, downmixed and resampled to 16 kHz. It asks the
    device for 16 kHz and takes the device's own rate when it refuses that; a watchdog reports a device that
    stops delivering (unplugged) through ``failed``."""

    def __init__(self, device: InputDevice):
        self.device = device
        self.name = device.name
        self._stream = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last = 0.0

    def start(self, deliver: Deliver, failed: Failed, end: Callable[[], None]) -> None:
        sd = _sounddevice()
        rate = self._rate(sd)
        resample = Resampler(rate)
        channels = min(self.device.channels, 2)

        def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
            self._last = time.perf_counter()
            deliver(resample(indata.mean(axis=1) if channels > 1 else indata[:, 0]), self._last)

        try:
            self._stream = sd.InputStream(device=self.device.index, samplerate=rate, channels=channels,
                                          dtype="float32", blocksize=round(rate * BLOCK_S), callback=callback)
            self._stream.start()
        except Exception as e:  # sounddevice.PortAudioError
            raise LiveInputError(f"the input {self.name!r} cannot start: {e}") from e
        self._last = time.perf_counter()
        self._watchdog = threading.Thread(target=self._watch, args=(failed,), name="live-input-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def _rate(self, sd) -> int:
        """16 kHz when the device records at it, else its default rate; LiveInputError when it takes neither."""
        for rate in dict.fromkeys((AUDIO_RATE, int(self.device.rate))):
            try:
                sd.check_input_settings(device=self.device.index, samplerate=rate, channels=1, dtype="float32")
                return rate
            except Exception:  # sounddevice.PortAudioError: the rate is not supported
                continue
        raise LiveInputError(f"the input {self.name!r} records neither at {AUDIO_RATE} Hz nor at its default "
                             f"{self.device.rate:g} Hz: choose another input or set its rate in the system's "
                             "sound settings")

    def _watch(self, failed: Failed) -> None:
        while not self._stopping.wait(0.1):
            stream = self._stream
            if stream is None:
                return
            if not stream.active or time.perf_counter() - self._last > STALL_S:
                failed(f"the input {self.name!r} stopped delivering sound (unplugged?)")
                return

    def stop(self) -> None:
        self._stopping.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # an unplugged device can fail to stop: it is gone either way
                pass


class FileSource:
    """A sound file played into the session as if a microphone heard it: 10 ms chunks, each delivered when its
    last sample would have arrived in real time."""

    def __init__(self, path: Path):
        path = Path(path)
        if not path.is_file():
            raise LiveInputError(f"the input file {path} does not exist")
        info = probe(path)
        if not info.has_audio:
            raise LiveInputError(f"{path.name} has no audio track to play as the live input")
        self.path, self.name = path, path.name
        self.audio = load_audio(path)                    # float32 [S] 16 kHz
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self, deliver: Deliver, failed: Failed, end: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=self._play, args=(deliver, end), name="live-file-input", daemon=True)
        self._thread.start()

    def _play(self, deliver: Deliver, end: Callable[[], None]) -> None:
        step = round(AUDIO_RATE * BLOCK_S)
        begun = time.perf_counter()
        for start in range(0, len(self.audio), step):
            chunk = self.audio[start:start + step]
            due = begun + (start + len(chunk)) / AUDIO_RATE      # when a microphone would have heard it
            if self._stopping.wait(max(due - time.perf_counter(), 0.0)):
                return
            deliver(chunk, due)
        end()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


def open_input(spec: str | None) -> AudioSource:
    """The live input ``spec`` names: a sound file's path (played in real time), an input device's number or part of
    its name, or the default input for None."""
    if spec is not None and (Path(spec).exists() or Path(spec).suffix.lower() in SOUND_SUFFIXES or
                             "/" in spec or "\\" in spec):
        return FileSource(Path(spec))
    return DeviceSource(find_device(spec))
