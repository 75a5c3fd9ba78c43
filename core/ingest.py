"""Ingest: reference a footage clip in a project and extract its speech track (the first stage)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import config as cfgs
from core.errors import MediaError
from core.jobs import CancelToken, Progress, ProgressFn
from core.media import AUDIO_RATE, load_audio, probe, write_wav
from core.project import FootageRef, Project, file_sha256

AUDIO_FILE = "audio_16k.wav"


@dataclass(frozen=True)
class IngestConfig:
    sample_rate: int = AUDIO_RATE  # speech is analysed at 16 kHz mono downstream
    audio_stream: int = 0


@dataclass
class IngestJob:
    """Probe, hash and reference ``footage`` in ``project``; write its audio as 16 kHz mono WAV.

    Nothing in the project changes until the job succeeds: a cancel or an error leaves it as it was.
    """

    project: Project
    footage: Path
    config: IngestConfig = IngestConfig()
    name: str = "Import footage"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> FootageRef:
        path = Path(self.footage).expanduser().absolute()
        progress(Progress(0.0, f"Reading {path.name}"))
        info = probe(path)
        if not info.has_video:
            raise MediaError(path, "has no video stream: footage must be a video of the speaker")
        if not info.has_audio:
            raise MediaError(path, "has no audio track: the avatar learns lip sync from the speaker's voice")
        cancel.check(self.name)

        size = path.stat().st_size

        def hashed(done: int) -> None:
            cancel.check(self.name)
            progress(Progress(0.05 + 0.45 * done / max(size, 1), f"Hashing {path.name}"))

        digest = file_sha256(path, on_chunk=hashed)
        progress(Progress(0.5, "Extracting audio"))
        audio = load_audio(path, self.config.sample_rate, self.config.audio_stream)  # float32 [S]
        cancel.check(self.name)
        write_wav(self.project.path(AUDIO_FILE), audio, self.config.sample_rate)

        st = path.stat()
        ref = FootageRef(path=str(path), sha256=digest, size=st.st_size, mtime=st.st_mtime, info=info.to_dict())
        self.project.footage = ref
        self.project.record_stage("ingest", [AUDIO_FILE], cfgs.to_dict(self.config), {"footage": digest})
        self.project.save()
        progress(Progress(1.0, f"Imported {path.name}: {info.frame_count} frames, {info.duration:.2f} s"))
        return ref
