"""Face regions per frame, from landmarks, for the stages after tracking: the face-oval mask, the
upper/lower face split at the nose tip, and the mouth box.

Boxes are ints x0,y0,x1,y1 in half-open pixel ranges (crop = image[y0:y1, x0:x1]). Masks are made on
demand from one frame's landmarks: storing them for minutes of footage would cost gigabytes.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.tracking.template import FACE_OVAL, LEFT_EYE, LIPS, NOSE_TIP, RIGHT_EYE

_SHIFT = 4  # cv2.fillPoly fixed-point bits: vertices to 1/16 pixel


def face_oval_mask(landmarks_t: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool [H,W]: pixels inside the face oval of one frame's landmarks [478,2] (size = (W, H))."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    # Landmark pixels put pixel centres at +0.5; cv2 puts them at integers.
    poly = np.round((landmarks_t[FACE_OVAL] - 0.5) * (1 << _SHIFT)).astype(np.int32)  # [36,2]
    cv2.fillPoly(mask, [poly], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def upper_lower_split_y(landmarks_t: np.ndarray) -> float:
    """y of the nose tip in one frame's landmarks [478,2]: the upper face lies above it, the lower below."""
    return float(landmarks_t[NOSE_TIP, 1])


def mouth_box(landmarks_t: np.ndarray, margin: float = 0.25,
              size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """x0,y0,x1,y1 around the lips of one frame's landmarks [478,2], grown by `margin` of the lips'
    width and height on every side; clipped to the frame when `size` (W, H) is given."""
    return tuple(int(v) for v in _boxes(landmarks_t[None, LIPS], margin, size)[0])


def eye_boxes(landmarks_t: np.ndarray, margin: float = 0.3,
              size: tuple[int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """x0,y0,x1,y1 around each eye's contour in one frame's landmarks [478,2] (left, right), grown by `margin`
    of the eye's width and height on every side; clipped to the frame when `size` (W, H) is given."""
    return [tuple(int(v) for v in _boxes(landmarks_t[None, eye], margin, size)[0]) for eye in (LEFT_EYE, RIGHT_EYE)]


def regions(landmarks: np.ndarray, size: tuple[int, int], mouth_margin: float = 0.25) -> dict[str, np.ndarray]:
    """Per-frame regions of landmarks [T,478,2] in a frame of `size` (W, H):
    ``mouth_box`` int32 [T,4], ``split_y`` float32 [T], ``face_box`` int32 [T,4] (all landmarks)."""
    return {
        "mouth_box": _boxes(landmarks[:, LIPS], mouth_margin, size),
        "split_y": landmarks[:, NOSE_TIP, 1].astype(np.float32),
        "face_box": _boxes(landmarks, 0.0, size),
    }


def _boxes(points: np.ndarray, margin: float, size: tuple[int, int] | None) -> np.ndarray:
    """int32 [T,4] bounding boxes of points [T,N,2], grown by `margin` of their extent, clipped to size."""
    lo, hi = points.min(axis=1), points.max(axis=1)  # [T,2]
    pad = (hi - lo) * margin
    box = np.concatenate([np.floor(lo - pad), np.ceil(hi + pad)], axis=1)  # [T,4]
    if size is not None:
        box = np.clip(box, 0, np.array([size[0], size[1], size[0], size[1]]))
    return box.astype(np.int32)
