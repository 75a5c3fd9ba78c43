"""The multi-speaker corpus as training data: ``clips.csv`` read, every clip tracked once and cached with its
front-end states, and each clip's audio-to-mouth lag measured so that clips out of sync are left out.

A clip's audio is aligned to its video's first frame (the streams' start times), its targets stay at the video's
own frame times, and its states at 50 Hz: the model is compared with each frame at that frame's exact time.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.config import config_hash, to_dict
from core.errors import AvatarStudioError, MediaError
from core.fsutil import load_npz, save_npz
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.media import FrameReader, advance, load_audio
from core.media.probe import open_media
from core.project import file_sha256
from core.speech.frontend import Frontend
from core.speech.targets import raw_targets
from core.tracking.landmarks import LandmarkConfig, detect_landmarks

CLIPS_CSV = "clips.csv"
CACHE_VERSION = 2  # 2: the tracking keeps every blendshape (the expression generator learns the upper face)


@dataclass(frozen=True)
class ClipRow:
    """One row of clips.csv (the columns a model card and a split need)."""

    file: str
    speaker: str
    tier: str
    language: str
    source: str
    terms: str


@dataclass
class Clip:
    """A tracked clip: targets at its video frames, states at 50 Hz."""

    row: ClipRow
    fps: Fraction
    raw: np.ndarray        # float32 [T,25] targets (core.speech.targets.OUTPUTS), own units
    valid: np.ndarray      # bool [T] frames where the face was tracked
    states: np.ndarray     # float32 [N,D] front-end states, N = n_states(audio)
    blendshapes: np.ndarray  # float32 [T,52] every tracked blendshape (MediaPipe's order)


def read_clips_csv(corpus: Path) -> list[ClipRow]:
    """clips.csv's rows; AvatarStudioError naming the file when it is missing or lacks a column."""
    path = Path(corpus) / CLIPS_CSV
    if not path.is_file():
        raise AvatarStudioError(f"{path}: no clips.csv in the corpus folder (one row per clip: file, speaker, ...)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    need = ("file", "speaker")
    missing = [c for c in need if rows and c not in rows[0]]
    if not rows or missing:
        raise AvatarStudioError(f"{path}: needs the columns {', '.join(need)}"
                                + (f" (missing {', '.join(missing)})" if missing else " and at least one row"))
    return [ClipRow(r["file"], r["speaker"], r.get("tier", ""), r.get("language", ""), r.get("source", ""),
                    r.get("terms", "")) for r in rows]


def video_aligned_audio(path: Path) -> np.ndarray:
    """float32 [S] 16 kHz mono whose sample 0 is the video's first frame (the tracks' start times may differ)."""
    with open_media(path) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        lead = 0.0
        if v.start_time is not None and a.start_time is not None:
            lead = float(v.start_time * v.time_base) - float(a.start_time * a.time_base)  # s of audio before frame 0
    return advance(load_audio(path), lead)


def load_clip(corpus: Path, row: ClipRow, frontend: Frontend, cache: Path, landmarks: LandmarkConfig = LandmarkConfig(),
              progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Clip:
    """The clip tracked and encoded, each part from ``cache`` when it was made before from the same file and
    settings (tracking, the slow part, survives a change of front-end)."""
    path = Path(corpus) / row.file
    if not path.is_file():
        raise MediaError(path, "is listed in clips.csv but missing")
    digest = file_sha256(path)
    stem = Path(row.file).stem
    report = progress or (lambda p: None)

    track_key = json.dumps({"v": CACHE_VERSION, "file": digest, "landmarks": config_hash(landmarks)}, sort_keys=True)
    track = _cached(Path(cache) / f"{stem}.track.npz", track_key)
    if track is None:
        with FrameReader(path) as reader:
            marks = detect_landmarks(reader, landmarks, span(report, 0.0, 0.9), cancel)
            track = {"fps": np.array(str(Fraction(reader.fps))), "valid": marks.valid,
                     "raw": raw_targets(marks.landmarks, marks.blendshapes), "blendshapes": marks.blendshapes}
        save_npz(Path(cache) / f"{stem}.track.npz", {**track, "key": np.array(track_key)})

    states_key = json.dumps({"v": CACHE_VERSION, "file": digest, "frontend": to_dict(frontend.cfg)}, sort_keys=True)
    states_file = Path(cache) / f"{stem}.states.{config_hash(frontend.cfg)[:12]}.npz"   # one per front-end
    states = _cached(states_file, states_key)
    if states is None:
        states = {"states": frontend.states(video_aligned_audio(path), span(report, 0.9, 1.0), cancel)}
        save_npz(states_file, {**states, "key": np.array(states_key)})
    return Clip(row, Fraction(str(track["fps"])), track["raw"], track["valid"], states["states"],
                track["blendshapes"])


def _cached(path: Path, key: str) -> dict[str, np.ndarray] | None:
    saved = load_npz(path) if path.is_file() else None
    return saved if saved is not None and str(saved.get("key")) == key else None


def load_corpus(corpus: Path, frontend: Frontend, cache: Path, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, files: tuple[str, ...] = ()) -> tuple[list[Clip], dict[str, str]]:
    """Every clip of the corpus that tracks (only those named in ``files``, by file name, when given), and
    {file: why} for those that do not. AvatarStudioError when ``files`` names none of clips.csv's clips."""
    rows = [r for r in read_clips_csv(corpus) if not files or Path(r.file).name in files]
    if files and not rows:
        raise AvatarStudioError(f"{corpus}: none of the clips asked for is in clips.csv")
    report = progress or (lambda p: None)
    clips, failed = [], {}
    for i, row in enumerate(rows):
        report(Progress(i / len(rows), f"Corpus: {row.file}"))
        try:
            clips.append(load_clip(corpus, row, frontend, cache, progress=span(report, i / len(rows),
                                                                             (i + 1) / len(rows)), cancel=cancel))
        except (MediaError, av.FFmpegError) as e:
            failed[row.file] = str(e)
    return clips, failed
