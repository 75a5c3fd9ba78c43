"""What the audio-visual encoder learns from: the tracked mouth of every frame.

Everything is measured in a face-aligned frame (the eye line horizontal, the distance between the outer
eye corners as the unit), so head motion and the subject's distance to the camera do not read as speech.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np

from core.jobs import CancelToken
from core.tracking.template import LIPS, NOSE_TIP

RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263   # image left and right outer eye corners
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
CROP_SIZE = (96, 48)                         # lower-face crop, (W, H) px


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame of landmarks [T,478,2]: eye-line unit vector x̂ [T,2], its normal ŷ (down) [T,2], and the
    distance between the outer eye corners [T]."""
    eye = landmarks[:, LEFT_EYE_OUTER] - landmarks[:, RIGHT_EYE_OUTER]  # [T,2]
    iod = np.linalg.norm(eye, axis=1)
    x_axis = eye / iod[:, None]
    y_axis = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=1)
    return x_axis, y_axis, iod


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """float32 [T]: the gap between the inner lips over the outer-eye-corner distance, from landmarks [T,478,2]."""
    _, _, iod = _face_frame(landmarks)
    gap = np.linalg.norm(landmarks[:, LOWER_LIP_INNER] - landmarks[:, UPPER_LIP_INNER], axis=1)
    return (gap / iod).astype(np.float32)


def lip_shape(landmarks: np.ndarray) -> np.ndarray:
    """float32 [T,40,2]: the lip landmarks around their centre in the face-aligned frame, eye distance = 1."""
    x_axis, y_axis, iod = _face_frame(landmarks)
    lips = landmarks[:, LIPS]                                     # [T,40,2]
    centred = lips - lips.mean(axis=1, keepdims=True)
    local = np.stack([(centred * x_axis[:, None]).sum(-1), (centred * y_axis[:, None]).sum(-1)], axis=-1)
    return (local / iod[:, None, None]).astype(np.float32)


MOUTH_DIM = 81   # mouth_targets' width


def mouth_targets(landmarks: np.ndarray) -> np.ndarray:
    """float32 [T,81]: what the reconstruction branch predicts, the opening first, then the lip shape."""
    return np.concatenate([mouth_opening(landmarks)[:, None], lip_shape(landmarks).reshape(len(landmarks), -1)], axis=1)


def standardised_mouths(landmarks: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """float32 [T,81]: each frame's tracked mouth (mouth_targets) of landmarks [T,478,2], as
    z-scores over the training ``frames`` (int [N]): what the lip feature reads in training."""
    mouth = mouth_targets(landmarks)                                                     # [T,81]
    return ((mouth - mouth[frames].mean(0)) / (mouth[frames].std(0) + 1e-6)).astype(np.float32)


def crop_transforms(landmarks: np.ndarray, smooth: int = 5) -> np.ndarray:
    """float32 [T,2,3]: affine maps from each frame to its lower-face crop (CROP_SIZE).

    The crop hangs from the nose tip along the eye line: 1.7 eye distances wide, 0.85 high. Built from
    rigid points only (eyes, nose), so an opening mouth moves inside the crop rather than moving the crop;
    a running mean over ``smooth`` frames removes landmark jitter.
    """
    x_axis, y_axis, iod = _face_frame(landmarks)
    anchor = landmarks[:, NOSE_TIP]
    kernel = np.ones(smooth) / smooth

    def run_mean(v: np.ndarray) -> np.ndarray:
        padded = np.pad(v, [(smooth // 2, smooth // 2)] + [(0, 0)] * (v.ndim - 1), mode="edge")
        return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, padded)

    x_axis, y_axis, iod, anchor = run_mean(x_axis), run_mean(y_axis), run_mean(iod), run_mean(anchor)
    w, h = CROP_SIZE
    width, height = 1.7 * iod, 0.85 * iod                               # [T] px in the frame
    sx, sy = w / width, h / height                                      # crop px per frame px
    top_left = anchor - 0.5 * width[:, None] * x_axis + 0.1 * iod[:, None] * y_axis  # [T,2]
    m = np.zeros((len(landmarks), 2, 3), np.float32)
    m[:, 0, :2] = x_axis * sx[:, None]
    m[:, 1, :2] = y_axis * sy[:, None]
    m[:, 0, 2] = -(m[:, 0, :2] * top_left).sum(1)
    m[:, 1, 2] = -(m[:, 1, :2] * top_left).sum(1)
    return m


def lower_face_crops(frames: Iterable[np.ndarray], transforms: np.ndarray, cancel: CancelToken | None = None,
                     on_frame: Callable[[int], None] | None = None) -> np.ndarray:
    """uint8 [T,H,W,3] lower-face crops of frames (RGB uint8 [H,W,3] each) under transforms [T,2,3]."""
    out = np.empty((len(transforms), CROP_SIZE[1], CROP_SIZE[0], 3), np.uint8)
    for t, frame in enumerate(frames):
        if t >= len(transforms):
            break
        if cancel is not None and t % 32 == 0:
            cancel.check("lower-face crops")
        out[t] = cv2.warpAffine(frame, transforms[t], CROP_SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        if on_frame:
            on_frame(t)
    return out
