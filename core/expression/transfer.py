"""Expression tracks in and out of a project. A Live Link Face CSV (a phone take, an Audio2Face export) becomes the
edited track, resampled to the footage's frames; the edited track (the tracked one where there are no edits) goes
out as a CSV at the footage's rate or at 30/60 fps, or as JSON for scripts."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from core.errors import MediaError
from core.expression.arkit_csv import (ARKIT_NAMES, HEAD_NAMES, from_mediapipe, head_angles, read_csv, to_mediapipe,
                                       write_csv)
from core.expression.edits import edited_performance, performance, save_take
from core.expression.generator import subject_range
from core.fsutil import atomic_write_json, set_aside
from core.layout import EDITS_FILE, KEYS_FILE
from core.jobs import CancelToken, Progress, ProgressFn
from core.project import Project
from core.tracking.landmarks import BLENDSHAPE_NAMES, EXPRESSION_COLUMNS
from core.tracking.track import load_tracking

NEUTRAL = BLENDSHAPE_NAMES.index("_neutral")


def resample(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """float32 [N,K]: ``values`` [T,K] sampled at ``times`` [T] (s, increasing), read at ``at`` [N] (s), linearly,
    held at the ends."""
    return np.stack([np.interp(at, times, values[:, k]) for k in range(values.shape[1])], axis=1).astype(np.float32)


def import_take(project: Project, csv: Path, keep_in_range: bool = True, cancel: CancelToken | None = None) -> int:
    """Make the Live Link Face take ``csv`` the project's edited track over the frames it spans (the rest keep the
    track as it was); returns how many frames it drives. With ``keep_in_range`` its seven core blendshapes (the
    ones the avatar renders) are rebuilt from the subject's expression codebook: another person's brows and blinks
    in this face's range. MediaError naming the problem for a malformed file."""
    take = read_csv(csv)
    tracking = load_tracking(project)
    track = performance(project, tracking)                                              # [T,52]
    fps = Fraction(project.checked_footage().info["fps"])
    t = np.arange(len(track)) / float(fps)                                              # [T] s
    spanned = t <= take.times[-1] + 0.5 / float(fps)
    if not spanned.any():
        raise MediaError(csv, "holds no frame")
    driven = to_mediapipe(resample(take.blendshapes, take.times, t[spanned]))           # [N,52]
    driven[:, NEUTRAL] = track[spanned, NEUTRAL]                                        # not an ARKit shape
    if keep_in_range:
        driven[:, EXPRESSION_COLUMNS] = subject_range(driven[:, EXPRESSION_COLUMNS], tracking, cancel)
    track[spanned] = driven
    if project.path(EDITS_FILE).exists():
        with project.writing("keep the previous take"):
            set_aside(project.path(EDITS_FILE), ".replaced")
    save_take(project, track)
    return int(spanned.sum())


@dataclass
class ImportTakeJob:
    """``import_take`` as a job (the studio's File ▸ Import Expressions)."""

    project: Project
    csv: Path
    keep_in_range: bool = True
    name: str = "Import expressions"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> int:
        progress(Progress(0.0, f"Reading {self.csv.name}"))
        return import_take(self.project, self.csv, self.keep_in_range, cancel)


@dataclass
class ExportTakeJob:
    """``export_take`` as a job (File ▸ Export Expressions)."""

    project: Project
    out: Path
    fps: int | None = None
    name: str = "Export expressions"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> int:
        return export_take(self.project, self.out, self.fps)


def export_take(project: Project, out: Path, fps: int | None = None) -> int:
    """Write the project's current track to ``out``: a Live Link Face CSV (the head's stabilized rotation
    included) or, for a ``.json`` name, JSON for scripts; at the footage's rate or resampled to ``fps``. Returns
    the frames written."""
    edited = edited_performance(project, load_tracking(project))
    track = from_mediapipe(edited.blendshapes)                                          # [T,52] ARKit order
    head = head_angles(edited.rot)                                                      # [T,3] yaw, pitch, roll
    source = Fraction(project.checked_footage().info["fps"])
    rate = Fraction(fps) if fps else source
    if rate != source:
        at = np.arange(int(len(track) / source * rate)) / float(rate)                   # [N] s
        times = np.arange(len(track)) / float(source)
        track, head = resample(track, times, at), resample(head, times, at)
    if out.suffix.lower() == ".json":
        atomic_write_json(out, {"fps": str(rate), "names": list(ARKIT_NAMES), "blendshapes": track.round(6).tolist(),
                                "head_names": list(HEAD_NAMES), "head": head.round(6).tolist()})
    else:
        write_csv(out, track, rate, head)
    return len(track)


def clear_edits(project: Project) -> list[Path]:
    """Drop the imported take and the keyframed edits (the tracked performance drives the avatar again); they are
    set aside, not deleted. Returns where they went."""
    paths = [p for p in (project.path(EDITS_FILE), project.path(KEYS_FILE)) if p.exists()]
    with project.writing("clear edits"):
        return [set_aside(p, ".cleared") for p in paths]
