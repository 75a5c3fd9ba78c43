"""Ingest: reference a footage clip in a project and extract its speech track (the first stage)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core import config as cfgs
from core.errors import MediaError
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AUDIO_FILE
from core.media import AUDIO_RATE, advance, load_audio, probe, write_wav
from core.options import option
from core.project import FootageRef, Project, file_sha256, writes_project


@dataclass(frozen=True)
class IngestConfig:
    sample_rate: int = AUDIO_RATE  # speech is analysed at 16 kHz mono downstream
    audio_stream: int = 0
    sound: Path | None = option(None, "the footage's sound, recorded apart (any audio file); default: its own "
                                      "track", flag="--audio", metavar="SOUND")
    offset: float = option(0.0, "seconds the sound comes late against the picture, removed at import (0: the audio "
                                "stage finds the offset itself)", metavar="SECONDS")


def is_silent(project: Project) -> bool:
    """Whether the project's footage came with no sound at all (no track of its own, none imported beside it)."""
    record = project.stages.get("ingest")
    return (project.footage is not None and not project.footage.info["audio"]
            and (record is None or record.config.get("sound") is None))


@dataclass
class IngestJob:
    """Probe, hash and reference ``footage`` in ``project``; write its sound as 16 kHz mono WAV: its own track, a
    sound file recorded apart (``config.sound``), or silence for footage without sound.

    Nothing in the project changes until the job succeeds: a cancel or an error leaves it as it was.
    """

    project: Project
    footage: Path
    config: IngestConfig = IngestConfig()
    name: str = "Import footage"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> FootageRef:
        path = Path(self.footage).expanduser().absolute()
        progress(Progress(0.0, f"Reading {path.name}"))
        info = probe(path)
        if not info.has_video:
            raise MediaError(path, "has no video stream: footage must be a video of the speaker")
        sound = Path(self.config.sound).expanduser().absolute() if self.config.sound is not None else None
        if sound is not None and not probe(sound).has_audio:
            raise MediaError(sound, "has no audio track: it cannot be the footage's sound")
        cancel.check(self.name)

        size = path.stat().st_size

        def hashed(done: int) -> None:
            cancel.check(self.name)
            progress(Progress(0.05 + 0.45 * done / max(size, 1), f"Hashing {path.name}"))

        digest = file_sha256(path, on_chunk=hashed)
        progress(Progress(0.5, "Extracting audio"))
        rate = self.config.sample_rate
        if sound is not None:   # recorded apart: its length made the picture's
            audio = _fit(advance(load_audio(sound, rate), self.config.offset, rate), round(info.duration * rate))
        elif info.has_audio:
            audio = advance(load_audio(path, rate, self.config.audio_stream), self.config.offset, rate)
        else:                   # silent footage: the avatar learns its lips from the tracked face alone
            audio = np.zeros(round(info.duration * rate), np.float32)
        cancel.check(self.name)
        write_wav(self.project.path(AUDIO_FILE), audio, rate)

        st = path.stat()
        ref = FootageRef(path=str(path), sha256=digest, size=st.st_size, mtime=st.st_mtime, info=info.to_dict())
        self.project.footage = ref
        inputs = {"footage": digest} | ({"sound": file_sha256(sound)} if sound is not None else {})
        self.project.record_stage("ingest", [AUDIO_FILE], cfgs.to_dict(replace(self.config, sound=sound)), inputs)
        self.project.save()
        progress(Progress(1.0, f"Imported {path.name}: {info.frame_count} frames, {info.duration:.2f} s"))
        return ref


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """``audio`` [S] cut or padded with silence to ``n`` samples."""
    return audio[:n] if len(audio) >= n else np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
