"""Audio in and out: any track as 16 kHz mono float32 (what the speech models take), and WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from core.errors import MediaError
from core.fsutil import atomic_path
from core.media.probe import open_media

AUDIO_RATE = 16000


def load_audio(path: str | Path, sample_rate: int = AUDIO_RATE, stream: int = 0) -> np.ndarray:
    """Audio track `stream` (counting audio tracks only) of any media file as float32 [S] mono in [-1, 1].

    The length is the track's duration at `sample_rate` (codec priming and padding removed), so audio lines
    up with video frame by frame.
    """
    path = Path(path)
    with open_media(path) as container:
        tracks = container.streams.audio
        if not tracks:
            raise MediaError(path, "has no audio track")
        if not 0 <= stream < len(tracks):
            raise MediaError(path, f"has no audio track {stream} (it has {len(tracks)})")
        track = tracks[stream]
        # Keep the channels and average them after: swresample's mono downmix can exceed [-1, 1].
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []  # float32 [s] each, channels averaged
        start: int | None = None
        end = 0  # in track time base: the latest packet end; the decoder's last frame can run past it
        try:
            for packet in container.demux(track):
                if packet.size and not packet.is_discard and packet.pts is not None:
                    start = packet.pts if start is None else min(start, packet.pts)
                    end = max(end, packet.pts + packet.duration)
                for frame in packet.decode():
                    chunks.extend(f.to_ndarray().mean(axis=0) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().mean(axis=0) for f in resampler.resample(None))
        except av.FFmpegError as e:
            raise MediaError(path, f"is truncated or damaged: its audio does not decode ({e.strerror})") from e
        duration = track.duration if track.duration else end - (start or 0)
        samples = round(float(duration * track.time_base) * sample_rate)
    if not chunks:
        raise MediaError(path, "is truncated or damaged: no audio decodes")
    mono = np.concatenate(chunks)  # [S'] a little longer than the track when the codec pads its last frame
    out = np.zeros(samples, dtype=np.float32)
    out[: min(samples, len(mono))] = mono[:samples]
    return np.clip(out, -1.0, 1.0, out=out)


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
