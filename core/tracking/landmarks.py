"""Per-frame face landmarks, blendshapes and head transform with MediaPipe's FaceLandmarker, for one person.

The face followed is the largest, most central one in the first frame with faces (or the one the user
picks); after that, each frame's face is the one that overlaps the previous frame's box most. Frames
where it is not found are flagged; short gaps are interpolated, longer ones stay invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import MediaError
from core.jobs import CancelToken, Progress, ProgressFn
from core.media import FrameReader

# MediaPipe's 52 blendshape categories in output order (ARKit names; "_neutral" first).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
# SyncTalk++'s 7 core blendshapes of the upper face, the avatar's expression controls (ARKit names, as MediaPipe
# reports them).
EXPRESSION_BLENDSHAPES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "eyeBlinkLeft", "eyeBlinkRight",
)
EXPRESSION_COLUMNS: list[int] = [BLENDSHAPE_NAMES.index(n) for n in EXPRESSION_BLENDSHAPES]  # in BLENDSHAPE_NAMES
NUM_LANDMARKS = 478  # 468 mesh vertices + 10 iris points

# A face in a new frame is the followed one when its box overlaps the previous box at least this much
# (IoU), or, failing that, when its centre lies within one box diagonal of the previous centre.
_MIN_IOU = 0.2


@dataclass(frozen=True)
class LandmarkConfig:
    min_detection_confidence: float = 0.5  # face detector score to start tracking a face
    min_presence_confidence: float = 0.5   # landmark model's face-presence score
    min_tracking_confidence: float = 0.5   # below this MediaPipe re-runs the detector
    max_faces: int = 3            # faces looked for per frame, so one person can be followed among several
    max_gap_frames: int = 12      # longest run of missed frames bridged by interpolation
    face: int | None = None       # face to follow: None = largest, most central; N = N-th from the left
    model: Path | None = None     # face_landmarker.task override (else core.models resolves it)

    def __post_init__(self) -> None:
        for name in ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {self.max_faces}")
        if self.max_gap_frames < 0:
            raise ValueError(f"max_gap_frames must be >= 0, got {self.max_gap_frames}")
        if self.face is not None and not 0 <= self.face < self.max_faces:
            raise ValueError(f"face must be in [0, max_faces={self.max_faces}), got {self.face}")


@dataclass
class Landmarks:
    """One followed face through a clip of T frames.

    Pixel coordinates are MediaPipe's normalized ones times the frame size: pixel (i, j) spans
    [i, i+1) x [j, j+1), so its centre is at (i + 0.5, j + 0.5). Frames that are not `valid` hold the
    nearest valid frame's values (arrays stay finite); consumers must use `valid`.
    """

    landmarks: np.ndarray       # float32 [T,478,2] pixels (x right, y down)
    depth: np.ndarray           # float32 [T,478] MediaPipe's relative z, in pixels of width (smaller = nearer)
    blendshapes: np.ndarray     # float32 [T,52] ARKit-named coefficients in [0,1], order = BLENDSHAPE_NAMES
    head_transform: np.ndarray  # float32 [T,4,4] MediaPipe facial transformation matrix (canonical -> camera, cm)
    detected: np.ndarray        # bool [T] face found in this frame
    valid: np.ndarray           # bool [T] detected, or interpolated across a gap of <= max_gap_frames
    boxes: np.ndarray           # float32 [T,4] x0,y0,x1,y1 of the followed face's landmarks

    def __len__(self) -> int:
        return len(self.valid)


def detect_landmarks(reader: FrameReader, config: LandmarkConfig = LandmarkConfig(),
                     progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                     face: int | None = None) -> Landmarks:
    """Track one face through every frame of `reader`; `face` overrides `config.face`.

    Raises MediaError when no frame shows a face, or fewer faces than the one asked for.
    """
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from core.models import FACE_LANDMARKER, resolve_model

    progress = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    face = config.face if face is None else face
    n = len(reader)
    w, h = reader.size
    model = resolve_model(FACE_LANDMARKER, config.model)
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=config.max_faces,
        min_face_detection_confidence=config.min_detection_confidence,
        min_face_presence_confidence=config.min_presence_confidence,
        min_tracking_confidence=config.min_tracking_confidence,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )

    lm = np.zeros((n, NUM_LANDMARKS, 2), np.float32)
    depth = np.zeros((n, NUM_LANDMARKS), np.float32)
    blend = np.zeros((n, len(BLENDSHAPE_NAMES)), np.float32)
    xform = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    detected = np.zeros(n, bool)
    prev_box: np.ndarray | None = None  # [4] last box of the followed face
    fps = reader.fps
    job = "Face landmarks"
    progress(Progress(0.0, f"{job}: loading the model"))
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for i, rgb in enumerate(reader):
            cancel.check(job)
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
            result = landmarker.detect_for_video(image, int(i * 1000 / fps))  # ms, strictly increasing
            faces = [np.array([(p.x, p.y, p.z) for p in f], np.float32) for f in result.face_landmarks]
            if faces:
                pts = np.stack(faces)[..., :2] * np.array([w, h], np.float32)  # [F,478,2] px
                boxes = np.concatenate([pts.min(1), pts.max(1)], axis=1)   # [F,4]
                k = _start_face(boxes, (w, h), face, reader.path, i) if prev_box is None else _follow(boxes, prev_box)
                if k is not None:
                    prev_box = boxes[k]
                    detected[i] = True
                    lm[i] = pts[k]
                    depth[i] = faces[k][:, 2] * w
                    for c in result.face_blendshapes[k]:
                        blend[i, c.index] = c.score
                    xform[i] = result.facial_transformation_matrixes[k]
            progress(Progress((i + 1) / n, f"{job}: frame {i + 1}/{n}"))
    if not detected.any():
        raise MediaError(reader.path, f"no face found in any of the {n} frames")

    valid = _fill_gaps(detected, config.max_gap_frames, lm, depth, blend, xform)
    boxes = np.concatenate([lm.min(1), lm.max(1)], axis=1)  # [T,4]
    return Landmarks(landmarks=lm, depth=depth, blendshapes=np.clip(blend, 0.0, 1.0), head_transform=xform,
                     detected=detected, valid=valid, boxes=boxes)


def _start_face(boxes: np.ndarray, size: tuple[int, int], face: int | None, path: Path, frame: int) -> int:
    """Index into `boxes` [F,4] of the face to follow: the user's pick (left to right), or the one whose
    size times centrality is largest (centrality falls linearly from 1 at the centre to 0 at a corner)."""
    if face is not None:
        if face >= len(boxes):
            raise MediaError(path, f"face {face} was asked for, but frame {frame}, the first with faces, "
                                   f"shows only {len(boxes)} (faces are numbered from 0, left to right)")
        return int(np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")[face])
    w, h = size
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2                                   # [F,2]
    off = np.hypot(centres[:, 0] - w / 2, centres[:, 1] - h / 2) / np.hypot(w / 2, h / 2)
    extent = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))                # [F] px
    return int(np.argmax(extent * np.clip(1.0 - off, 0.0, 1.0)))


def _follow(boxes: np.ndarray, prev: np.ndarray) -> int | None:
    """Index of the face in `boxes` [F,4] that continues `prev` [4], or None when it is not among them."""
    lo = np.maximum(boxes[:, :2], prev[:2])
    hi = np.minimum(boxes[:, 2:], prev[2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    iou = inter / (area + np.prod(prev[2:] - prev[:2]) - inter)                   # [F]
    k = int(np.argmax(iou))
    if iou[k] >= _MIN_IOU:
        return k
    # A fast move or a gap: accept the nearest face within one box diagonal of where it was.
    dist = np.hypot(*((boxes[:, :2] + boxes[:, 2:]) / 2 - (prev[:2] + prev[2:]) / 2).T)
    k = int(np.argmin(dist))
    return k if dist[k] <= np.hypot(*(prev[2:] - prev[:2])) else None


def _fill_gaps(detected: np.ndarray, max_gap: int, *arrays: np.ndarray) -> np.ndarray:
    """Linearly interpolate `arrays` (each [T,...], in place) over runs of undetected frames of at most
    `max_gap` between detected frames; other undetected frames take the nearest detected frame's values.
    Returns valid [T]: detected or interpolated."""
    t = np.arange(len(detected))
    known = np.flatnonzero(detected)
    # For every frame, the detected frames at or before (lo) and at or after (hi) it.
    pos = np.searchsorted(known, t)
    lo = known[np.clip(pos - 1, 0, len(known) - 1)]
    hi = known[np.clip(pos, 0, len(known) - 1)]
    lo = np.where(detected, t, lo)
    gap = hi - lo - 1  # missed frames in the run containing t
    valid = detected | ((lo < t) & (t < hi) & (gap <= max_gap))
    a = np.where(hi > lo, (t - lo) / np.maximum(hi - lo, 1), 0.0)  # [T] weight of `hi`
    nearest = np.where((t - lo > hi - t) | (t < lo), hi, lo)        # hold for frames outside bridged gaps
    for arr in arrays:
        shape = (-1,) + (1,) * (arr.ndim - 1)
        weight = a.reshape(shape).astype(arr.dtype)
        interp = arr[lo] * (1 - weight) + arr[hi] * weight
        arr[:] = np.where(valid.reshape(shape), interp, arr[nearest])
    return valid
