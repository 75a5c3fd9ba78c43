"""Expression tracks in and out of a project. A Live Link Face CSV (a phone take, an Audio2Face export) becomes the
edited track, resampled to the footage's frames; the edited track (the tracked one where there are no edits) goes
out as a CSV at the footage's rate or at 30/60 fps, or as JSON for scripts."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from core.errors import MediaError
from core.expression.arkit_csv import (ARKIT_NAMES, HEAD_NAMES, from_mediapipe, head_angles, read_csv, to_mediapipe,
                                       write_csv)
from core.expression.edits import edited_performance, performance, save_take
from core.fsutil import atomic_write_json, set_aside
from core.layout import EDITS_FILE, KEYS_FILE
from core.project import Project
from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.track import load_tracking

NEUTRAL = BLENDSHAPE_NAMES.index("_neutral")


def resample(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """float32 [N,K]: ``values`` [T,K] sampled at ``times`` [T] (s, increasing), read at ``at`` [N] (s), linearly,
    held at the ends."""
    return np.stack([np.interp(at, times, values[:, k]) for k in range(values.shape[1])], axis=1).astype(np.float32)


def import_take(project: Project, csv: Path) -> int:
    """Make the Live Link Face take ``csv`` the project's edited track over the frames it spans (the rest keep the
    track as it was); returns how many frames it drives. MediaError naming the problem for a malformed file."""
    take = read_csv(csv)
    track = performance(project, load_tracking(project))                                # [T,52]
    fps = Fraction(project.checked_footage().info["fps"])
    t = np.arange(len(track)) / float(fps)                                              # [T] s
    spanned = t <= take.times[-1] + 0.5 / float(fps)
    if not spanned.any():
        raise MediaError(csv, "holds no frame")
    driven = to_mediapipe(resample(take.blendshapes, take.times, t[spanned]))           # [N,52]
    driven[:, NEUTRAL] = track[spanned, NEUTRAL]                                        # not an ARKit shape
    track[spanned] = driven
    save_take(project, track)
    return int(spanned.sum())


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
