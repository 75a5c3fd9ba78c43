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
from core.expression.edits import load_edits, save_edits
from core.fsutil import atomic_write_json, set_aside
from core.layout import EDITS_FILE
from core.project import Project
from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.track import load_tracking

NEUTRAL = BLENDSHAPE_NAMES.index("_neutral")


def resample(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """float32 [N,K]: ``values`` [T,K] sampled at ``times`` [T] (s, increasing), read at ``at`` [N] (s), linearly,
    held at the ends."""
    return np.stack([np.interp(at, times, values[:, k]) for k in range(values.shape[1])], axis=1).astype(np.float32)


def current_track(project: Project, tracking: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """float32 [T,52] (the tracking's blendshape order): the edited track, or the tracked one without edits
    (``tracking``: the project's, when already loaded)."""
    tracked = (tracking if tracking is not None else load_tracking(project))["blendshapes"]
    edits = load_edits(project, len(tracked))
    return np.array(edits["blendshapes"] if edits is not None else tracked, np.float32)


def import_take(project: Project, csv: Path) -> int:
    """Make the Live Link Face take ``csv`` the project's edited track over the frames it spans (the rest keep the
    track as it was); returns how many frames it drives. MediaError naming the problem for a malformed file."""
    take = read_csv(csv)
    track = current_track(project)                                                      # [T,52]
    fps = Fraction(project.checked_footage().info["fps"])
    t = np.arange(len(track)) / float(fps)                                              # [T] s
    spanned = t <= take.times[-1] + 0.5 / float(fps)
    if not spanned.any():
        raise MediaError(csv, "holds no frame")
    driven = to_mediapipe(resample(take.blendshapes, take.times, t[spanned]))           # [N,52]
    driven[:, NEUTRAL] = track[spanned, NEUTRAL]                                        # not an ARKit shape
    track[spanned] = driven
    save_edits(project, track)
    return int(spanned.sum())


def export_take(project: Project, out: Path, fps: int | None = None) -> int:
    """Write the project's current track to ``out``: a Live Link Face CSV (the head's stabilized rotation
    included) or, for a ``.json`` name, JSON for scripts; at the footage's rate or resampled to ``fps``. Returns
    the frames written."""
    tracking = load_tracking(project)
    track = from_mediapipe(current_track(project, tracking))                            # [T,52] ARKit order
    head = head_angles(tracking["rot"])                                                 # [T,3] yaw, pitch, roll
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


def clear_edits(project: Project) -> Path | None:
    """Drop the edited track (the tracked one drives the avatar again); it is set aside, not deleted. Returns where
    it went, or None when there was none."""
    path = project.path(EDITS_FILE)
    if not path.exists():
        return None
    with project.writing("clear edits"):
        return set_aside(path, ".cleared")
