"""The tracking stage as a job: landmarks -> head pose (Eq. 7-8) -> Head-Sync Stabilizer (Eq. 9-12) ->
face regions, saved in the project as ``tracking.npz`` with the config that made it.

Landmark detection, the slow part, is cached apart in ``landmarks.npz`` under the hash of its config and
of the footage, so changing only the pose or stabilizer settings re-runs only those. Results are
written after all computing is done: a cancel or an error leaves the project as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from core.config import config_hash, to_dict
from core.errors import ProjectError
from core.fsutil import load_npz, save_npz
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.layout import KEYPOINTS_FILE, LANDMARKS_FILE, TRACKING_FILE
from core.media import FrameReader
from core.pipeline import begin
from core.project import Project, damaged, writes_project
from core.tracking.landmarks import BLENDSHAPE_NAMES, LandmarkConfig, Landmarks, detect_landmarks
from core.tracking.pose import PoseConfig, fit_pose
from core.tracking.regions import regions
from core.tracking.stabilize import StabilizeConfig, stabilize

STAGE = "tracking"

# What tracking.npz holds; shapes for a clip of T frames.
TRACKING_KEYS = (
    "landmarks",         # float32 [T,478,2] px
    "depth",             # float32 [T,478] MediaPipe's relative z, px
    "blendshapes",       # float32 [T,52]
    "blendshape_names",  # str [52]
    "detected",          # bool [T]
    "valid",             # bool [T]
    "head_transform",    # float32 [T,4,4] MediaPipe's
    "focal", "cx", "cy", "scale",  # float64 [] camera intrinsics (px) and template scale
    "template",          # float32 [468,3] the subject's fitted template in head space, times scale
    "rot_raw", "rot",    # float [T,3,3] per-frame fit, stabilized
    "trans_raw", "trans",  # float [T,3]
    "reproj_px",         # float [T] mean rigid-landmark reprojection error of the raw fit
    "mouth_box",         # int32 [T,4] x0,y0,x1,y1
    "split_y",           # float32 [T] nose-tip y: upper / lower face
    "face_box",          # int32 [T,4]
    "config_json",       # str [] the TrackConfig, as JSON
)


@dataclass(frozen=True)
class TrackConfig:
    landmarks: LandmarkConfig = LandmarkConfig()
    pose: PoseConfig = PoseConfig()
    stabilize: StabilizeConfig = StabilizeConfig()


@dataclass
class TrackJob:
    """Track the project's footage; `face` (0 = leftmost) picks whom to follow when several are in view."""

    project: Project
    config: TrackConfig = TrackConfig()
    face: int | None = None
    name: str = "Track face"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> dict[str, np.ndarray]:
        config = self.config
        if self.face is not None:
            config = replace(config, landmarks=replace(config.landmarks, face=self.face))
        run = begin(self.project, STAGE, to_dict(config))
        footage = run.footage
        if run.up_to_date:
            try:
                result = load_tracking(self.project)
                progress(Progress(1.0, "Tracking is up to date"))
                return result
            except ProjectError:
                pass  # unreadable: track again

        key = f"{config_hash(config.landmarks)}:{footage.sha256}"
        with FrameReader(footage.path) as reader:
            marks = _cached_landmarks(self.project.path(LANDMARKS_FILE), key)
            fresh = marks is None
            if marks is None:
                marks = detect_landmarks(reader, config.landmarks, span(progress, 0.0, 0.5), cancel)
            cancel.check(self.name)
            progress(Progress(0.5, "Fitting the head pose"))
            fit = fit_pose(marks.landmarks, marks.valid, reader.size, config.pose, span(progress, 0.5, 0.6), cancel)
            cancel.check(self.name)
            progress(Progress(0.6, "Stabilizing the head pose"))
            stable = stabilize(reader.read, marks.landmarks, marks.valid, fit, config.stabilize,
                               span(progress, 0.6, 0.95), cancel)
            size = reader.size
        cancel.check(self.name)

        result = {
            "landmarks": marks.landmarks,
            "depth": marks.depth,
            "blendshapes": marks.blendshapes,
            "blendshape_names": np.array(BLENDSHAPE_NAMES),
            "detected": marks.detected,
            "valid": marks.valid,
            "head_transform": marks.head_transform,
            "focal": np.asarray(fit.focal, np.float64),
            "cx": np.asarray(fit.cx, np.float64),
            "cy": np.asarray(fit.cy, np.float64),
            "scale": np.asarray(fit.scale, np.float64),
            "rot_raw": fit.rot,
            "rot": stable.rot,
            "trans_raw": fit.trans,
            "trans": stable.trans,
            "reproj_px": fit.reproj_px,
            "template": fit.template,
            **regions(marks.landmarks, size),
            "config_json": np.array(json.dumps(to_dict(config), sort_keys=True)),
        }
        # Everything is computed: from here on the project changes as a whole, without cancel points.
        progress(Progress(0.97, "Saving tracking"))
        if fresh:
            save_npz(self.project.path(LANDMARKS_FILE), {**vars(marks), "key": np.array(key)})
        save_npz(self.project.path(TRACKING_FILE), result)
        save_npz(self.project.path(KEYPOINTS_FILE), stable.tracks.arrays())
        run.record([TRACKING_FILE, LANDMARKS_FILE, KEYPOINTS_FILE])
        progress(Progress(1.0, f"Tracked {int(marks.detected.sum())}/{len(marks)} frames"))
        return result


def without_face(valid: np.ndarray) -> list[tuple[int, int]]:
    """The runs of frames with no face in view, as (first, end) frame ranges, end exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~valid).astype(np.int8), [0]])))  # starts and ends
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def load_tracking(project: Project) -> dict[str, np.ndarray]:
    """The arrays of the project's tracking.npz (TRACKING_KEYS); ProjectError when missing or corrupt."""
    path = project.path(TRACKING_FILE)
    if not path.is_file():
        raise ProjectError(path, "no tracking results: track the face first (avatar-studio-cli track --project DIR)")
    data = load_npz(path)
    missing = [k for k in TRACKING_KEYS if k not in data] if data is not None else []
    if data is None or missing:
        why = f"it lacks {', '.join(missing)}" if missing else "not a readable .npz file"
        raise damaged(path, "the tracking", why, "track the face again (avatar-studio-cli track)")
    return data


def _cached_landmarks(path: Path, key: str) -> Landmarks | None:
    """The landmarks saved at `path` when they were made under `key` (config hash : footage hash)."""
    data = load_npz(path) if path.is_file() else None
    if data is None or str(data.get("key")) != key:
        return None
    try:
        return Landmarks(**{f.name: data[f.name] for f in fields(Landmarks)})
    except KeyError:
        return None
