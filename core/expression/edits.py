"""The project's edited expression: the performance (the footage's tracked blendshapes [T,52], or a take imported
over them, ``expression_edits.npz``) with the keyframed edits on top (``expression_keys.json``: lanes of keys and
the undo history of the sessions that made them). Read wherever the avatar is driven for output (the studio's
viewer, dubbing, exports), so the edits reach them. Evaluation keeps the tracked track: it compares with the real
frames.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from core.config import from_dict
from core.errors import ProjectError
from core.expression.keyframes import FORMAT, Edits
from core.fsutil import atomic_write_json, load_npz, save_npz
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.layout import EDITS_FILE, KEYPOINTS_FILE, KEYS_FILE, POSE_FILE
from core.media import FrameReader
from core.project import Project, damaged
from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.stabilize import Tracks, restabilize, track_keypoints
from core.tracking.track import TrackConfig

HISTORY_LIMIT = 200  # undo steps kept in the project


def save_take(project: Project, blendshapes: np.ndarray) -> None:
    """Keep ``blendshapes`` float [T,52] (ARKit order, in [0,1]) as the performance the edits start from."""
    blendshapes = np.asarray(blendshapes, np.float32)
    if blendshapes.ndim != 2 or blendshapes.shape[1] != len(BLENDSHAPE_NAMES):
        raise ValueError(f"an expression track is [T,{len(BLENDSHAPE_NAMES)}], got {blendshapes.shape}")
    with project.writing("save edits"):
        save_npz(project.path(EDITS_FILE), {"blendshapes": np.clip(blendshapes, 0.0, 1.0),
                                            "blendshape_names": np.array(BLENDSHAPE_NAMES)})


def load_take(project: Project, frames: int) -> dict[str, np.ndarray] | None:
    """The imported take as tracking-style arrays (``blendshapes``, ``blendshape_names``), or None when the
    project has none; ProjectError when it does not cover the footage's ``frames`` frames."""
    path = project.path(EDITS_FILE)
    if not path.exists():
        return None
    data = load_npz(path)
    if data is None or "blendshapes" not in data or "blendshape_names" not in data:
        raise damaged(path, "the edited expressions", "not a readable edits file", "edit them again")
    if len(data["blendshapes"]) != frames:
        raise ProjectError(path, f"the edited expressions cover {len(data['blendshapes'])} frames and the footage "
                                 f"{frames}: edit them again or delete the file")
    return data


@dataclass(frozen=True)
class History:
    """Undo history: ``states[index]`` is the edits now; ``labels[i]`` names the step from state i to i + 1."""

    states: tuple[Edits, ...]
    labels: tuple[str, ...]
    index: int

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.states) - 1 or not 0 <= self.index < len(self.states):
            raise ValueError("an undo history has one label per step and its index within its states")

    @classmethod
    def start(cls, edits: Edits) -> History:
        return cls((edits,), (), 0)


def save_keys(project: Project, history: History) -> None:
    """Keep the keyframed edits (``history``'s current state) and their last ``HISTORY_LIMIT`` undo steps,
    atomically."""
    drop = max(0, len(history.labels) - HISTORY_LIMIT)
    states, labels = history.states[drop:], history.labels[drop:]
    with project.writing("save edits"):
        atomic_write_json(project.path(KEYS_FILE), {
            "format": FORMAT,
            "edits": history.states[history.index].to_dict(),
            "history": {"states": [s.to_dict() for s in states], "labels": list(labels),
                        "index": max(0, history.index - drop)}})


def load_keys(project: Project) -> History:
    """The project's keyframed edits and their undo history (an empty one without a file). A damaged or
    unreadable file is set aside with a ProjectError saying so."""
    path = project.path(KEYS_FILE)
    if not path.exists():
        return History.start(Edits())
    try:
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r} is not {FORMAT}")
        edits = Edits.from_dict(data["edits"])
        h = data.get("history")
        if not h:
            return History.start(edits)
        history = History(tuple(Edits.from_dict(s) for s in h["states"]), tuple(map(str, h["labels"])),
                          int(h["index"]))
        return history if history.states[history.index] == edits else History.start(edits)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise damaged(path, "the keyframed edits", str(e), "key them again") from e


def load_edits(project: Project) -> Edits:
    h = load_keys(project)
    return h.states[h.index]


@dataclass
class EditedPerformance:
    """What the avatar is driven with for output: the performance with the edits applied."""

    blendshapes: np.ndarray   # float32 [T,52] the tracking's order
    rot: np.ndarray           # [T,3,3] the stabilized head pose with the pose edits
    trans: np.ndarray         # [T,3]
    posed: bool               # whether pose edits moved the head
    notes: list[str]          # what differs from the tracked footage, for the user


def pose_digest(tracking: dict[str, np.ndarray]) -> str:
    """Identifies the raw fit and landmarks a stabilized pose is computed from."""
    h = hashlib.sha256()
    for k in ("rot_raw", "trans_raw", "landmarks", "valid"):
        h.update(np.ascontiguousarray(tracking[k]).tobytes())
    return h.hexdigest()


@dataclass
class RestabilizeJob:
    """The head pose stabilized at ``strength`` (the smoothness term times it): the tracking's own at 1; otherwise
    the bundle adjustment again from the tracking's keypoint tracks (found again in the footage when a project
    tracked before they were kept has none), kept in the project for the next time."""

    project: Project
    tracking: dict[str, np.ndarray]
    strength: float
    name: str = "Stabilize the head pose"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> tuple[np.ndarray, np.ndarray]:
        tracking, strength = self.tracking, float(self.strength)
        if strength == 1.0:
            return tracking["rot"], tracking["trans"]
        digest = pose_digest(tracking)
        path = self.project.path(POSE_FILE)
        kept = load_npz(path) if path.exists() else None
        if kept is not None and str(kept.get("digest")) == digest and float(kept.get("strength", -1)) == strength:
            return kept["rot"], kept["trans"]
        config = from_dict(TrackConfig, json.loads(str(tracking["config_json"]))).stabilize
        tracks = load_npz(self.project.path(KEYPOINTS_FILE), ("frame", "point", "uv", "weights"))
        if tracks is None or len(tracks) != 4:
            progress(Progress(0.0, "Finding the stabilizer's keypoints in the footage"))
            with FrameReader(self.project.checked_footage().path) as reader:
                found = track_keypoints(reader.read, tracking["landmarks"], tracking["valid"], config,
                                        span(progress, 0.0, 0.5), cancel)
            tracks = found.arrays()
        cancel.check(self.name)
        stable = restabilize(tracking, Tracks(**tracks), strength, config, span(progress, 0.5, 1.0), cancel)
        with self.project.writing(self.name):
            save_npz(path, {"rot": stable.rot, "trans": stable.trans, "strength": np.array(strength),
                            "digest": np.array(digest)})
        return stable.rot, stable.trans


def performance(project: Project, tracking: dict[str, np.ndarray]) -> np.ndarray:
    """float32 [T,52]: the performance the keys go over: the imported take, or the tracked blendshapes."""
    take = load_take(project, len(tracking["blendshapes"]))
    return np.array((take if take is not None else tracking)["blendshapes"], np.float32)


def edited_performance(project: Project, tracking: dict[str, np.ndarray], edits: Edits | None = None,
                       cancel: CancelToken | None = None) -> EditedPerformance:
    """The project's performance under ``edits`` (its saved ones when None)."""
    edits = load_edits(project) if edits is None else edits
    notes = []
    if project.path(EDITS_FILE).exists():
        notes.append("the upper face follows the project's imported expression take")
    if edits.lanes:
        notes.append(f"{len(edits.lanes)} keyframed control{'s' * (len(edits.lanes) != 1)} edit the expression or pose")
    if edits.stabilizer != 1.0:
        notes.append(f"the head pose is stabilized at {edits.stabilizer:g}x the tracking's strength")
    rot, trans = RestabilizeJob(project, tracking, edits.stabilizer).run(lambda _p: None, cancel or CancelToken())
    rot, trans = edits.pose(rot, trans)
    return EditedPerformance(edits.apply(performance(project, tracking)), rot, trans,
                             edits.posed or edits.stabilizer != 1.0, notes)
