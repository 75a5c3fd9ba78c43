"""Media I/O: probing, frame-exact video reading, audio loading, and atomic video/WAV export (PyAV)."""

from __future__ import annotations

from core.media.audio import AUDIO_RATE, AudioBuffer, AudioStream, advance, load_audio, write_wav
from core.media.probe import AudioStreamInfo, MediaInfo, probe
from core.media.reader import FrameReader
from core.media.writer import VideoWriter

__all__ = [
    "AUDIO_RATE",
    "AudioBuffer",
    "AudioStream",
    "AudioStreamInfo",
    "FrameReader",
    "MediaInfo",
    "VideoWriter",
    "load_audio",
    "probe",
    "advance",
    "write_wav",
]
