"""Audio in and out: any track as 16 kHz mono float32 (what the speech models take), and WAV files."""

from __future__ import annotations

import threading

import wave
from pathlib import Path

import av
import numpy as np

from core.errors import MediaError
from core.fsutil import atomic_path
from core.media.probe import open_media

AUDIO_RATE = 16000


def load_audio(path: str | Path, sample_rate: int = AUDIO_RATE, stream: int = 0, start: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Audio track `stream` (counting audio tracks only) of any media file as float32 [S] mono in [-1, 1].

    The length is the track's duration at `sample_rate` (codec priming and padding removed), so audio lines
    up with video frame by frame. With ``duration``, only [start, start + duration) s is kept (zeros past the
    track's end): decoding stops there and memory holds that range alone, however long the file.
    """
    path = Path(path)
    with open_media(path) as container:
        track = _track(path, container, stream)
        first = round(start * sample_rate)
        wanted = None if duration is None else round(duration * sample_rate)
        decoded = _Decoded(path, container, track, sample_rate, first, wanted)
        chunks = list(decoded)
    count = max(decoded.samples - first, 0) if wanted is None else wanted
    mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    out = np.zeros(count, dtype=np.float32)
    out[:min(count, len(mono))] = mono[:count]
    return np.clip(out, -1.0, 1.0, out=out)


class AudioBuffer:
    """A sound track that grows while it is written (a live take's microphone): ``append`` samples, read
    ``buffer[a:b]`` (zeros past what has arrived); ``finish(length)`` ends it at ``length`` samples."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._length = 0
        self._end: int | None = None      # set by finish
        self._lock = threading.Lock()

    @property
    def growing(self) -> bool:
        return self._end is None

    def append(self, samples: np.ndarray) -> None:
        if self._end is None and len(samples):
            with self._lock:
                self._chunks.append(np.asarray(samples, np.float32))
                self._length += len(samples)

    def finish(self, length: int) -> None:
        self._end = max(int(length), 0)

    def __len__(self) -> int:
        return self._length if self._end is None else self._end

    def __getitem__(self, part: slice) -> np.ndarray:
        a, b = part.start or 0, min(part.stop if part.stop is not None else len(self), len(self))
        with self._lock:
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            have = self._chunks[0][a:b] if self._chunks else np.zeros(0, np.float32)
        out = np.zeros(max(b - a, 0), np.float32)
        out[:len(have)] = have
        return np.clip(out, -1.0, 1.0, out=out)


class AudioStream:
    """[start, start + duration) s of a file's audio track at ``sample_rate``, decoded as it is read: ``len`` is
    the range's length in samples and ``stream[a:b]`` its samples a..b (zeros past the track's end), read front
    to back. Only the chunks not yet read are held, so a long dub's sound costs no more memory than a short one's.
    """

    def __init__(self, path: str | Path, sample_rate: int, start: float, duration: float, stream: int = 0):
        path = Path(path)
        self._container = open_media(path)
        track = _track(path, self._container, stream)
        self._length = round(duration * sample_rate)
        self._chunks = iter(_Decoded(path, self._container, track, sample_rate, round(start * sample_rate),
                                     self._length))
        self._buffer = np.zeros(0, np.float32)  # decoded samples from self._at on
        self._at = 0                            # the range's sample index of self._buffer[0]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, part: slice) -> np.ndarray:
        a, b = part.start or 0, min(part.stop if part.stop is not None else self._length, self._length)
        if a < self._at:
            raise ValueError(f"an AudioStream is read front to back: samples from {a} were already passed")
        while self._at + len(self._buffer) < b:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer = np.concatenate([self._buffer, chunk])
        out = np.zeros(max(b - a, 0), np.float32)
        have = self._buffer[a - self._at:b - self._at]
        out[:len(have)] = have
        self._buffer, self._at = self._buffer[max(a - self._at, 0):], a
        return np.clip(out, -1.0, 1.0, out=out)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _track(path: Path, container, stream: int):
    tracks = container.streams.audio
    if not tracks:
        raise MediaError(path, "has no audio track")
    if not 0 <= stream < len(tracks):
        raise MediaError(path, f"has no audio track {stream} (it has {len(tracks)})")
    return tracks[stream]


class _Decoded:
    """Iterates a track's mono float32 chunks within samples [first, first + wanted) from its start (to its end
    for ``wanted`` None), never past the track's duration (the codec's padding); ``samples`` is that duration in
    samples once iterated. Demuxing stops once the range is decoded."""

    def __init__(self, path: Path, container, track, sample_rate: int, first: int, wanted: int | None):
        self.path, self.container, self.track, self.rate = path, container, track, sample_rate
        self.first, self.wanted = first, wanted
        self.samples = round(float(track.duration * track.time_base) * sample_rate) if track.duration else None

    def __iter__(self):
        # Keep the channels and average them after: swresample's mono downmix can exceed [-1, 1].
        resampler = av.AudioResampler(format="fltp", rate=self.rate)
        decoded = 0  # samples decoded so far, from the track's start
        start: int | None = None
        end = 0  # in track time base: the latest packet end; the decoder's last frame can run past it
        stop = None if self.wanted is None else self.first + self.wanted

        def kept(frames):
            nonlocal decoded
            for f in frames:
                mono = f.to_ndarray().mean(axis=0)
                hi = len(mono) if self.samples is None else min(len(mono), self.samples - decoded)
                if stop is not None:
                    hi = min(hi, stop - decoded)
                lo = max(self.first - decoded, 0)
                decoded += len(mono)
                if lo < hi:
                    yield mono[lo:hi].astype(np.float32, copy=False)

        try:
            for packet in self.container.demux(self.track):
                if packet.size and not packet.is_discard and packet.pts is not None:
                    start = packet.pts if start is None else min(start, packet.pts)
                    end = max(end, packet.pts + packet.duration)
                for frame in packet.decode():
                    yield from kept(resampler.resample(frame))
                if stop is not None and decoded >= stop:
                    break  # the range is decoded: the rest of the file is never read
            else:
                yield from kept(resampler.resample(None))
        except av.FFmpegError as e:
            raise MediaError(self.path, f"is truncated or damaged: its audio does not decode ({e.strerror})") from e
        if decoded == 0:
            raise MediaError(self.path, "is truncated or damaged: no audio decodes")
        if self.samples is None:
            self.samples = round(float((end - (start or 0)) * self.track.time_base) * self.rate)


def advance(audio: np.ndarray, seconds: float, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """``audio`` [S] moved ``seconds`` earlier: its first samples dropped (negative: silence put before it)."""
    shift = round(seconds * sample_rate)
    return audio[shift:] if shift >= 0 else np.concatenate([np.zeros(-shift, np.float32), audio])


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = AUDIO_RATE) -> None:
    """Write float32 [S] mono as 16-bit PCM WAV, atomically: a reader never sees a half-written file."""
    path = Path(path)
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {audio.shape}")
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    try:
        with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())
    except OSError as e:
        raise MediaError(path, f"cannot be written ({e.strerror or e})") from e
