"""What the speech model predicts: the ARKit mouth and jaw blendshapes that speech moves, and the inner-lip opening,
each as a z-score over its clip's face frames (speaker-normalised: one person's wide mouth and another's narrow
one read alike)."""

from __future__ import annotations

import numpy as np

from core.audio.mouth import mouth_opening
from core.tracking.landmarks import BLENDSHAPE_NAMES

SPEECH_SHAPES: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthPressLeft", "mouthPressRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "jawForward", "cheekPuff",
)
OPENING = "lipOpening"                     # the inner-lip gap over the outer-eye-corner distance
OUTPUTS: tuple[str, ...] = (OPENING, *SPEECH_SHAPES)
SHAPE_INDEX = np.array([BLENDSHAPE_NAMES.index(n) for n in SPEECH_SHAPES])   # into MediaPipe's order


def raw_targets(landmarks: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
    """float32 [T,25]: the opening and the speech blendshapes (OUTPUTS' order) of landmarks [T,478,2] and
    blendshapes [T,52] (MediaPipe's order), in their own units."""
    return np.concatenate([mouth_opening(landmarks)[:, None], blendshapes[:, SHAPE_INDEX]], axis=1).astype(np.float32)


def normalise(raw: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z-scores [T,K], mean [K], std [K]) of ``raw`` [T,K] over its ``valid`` [T] frames."""
    seen = raw[valid] if valid.any() else raw
    mean, std = seen.mean(0), seen.std(0) + 1e-4
    return ((raw - mean) / std).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


def tracked_targets(landmarks: np.ndarray, blendshapes: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """float32 [T,25]: a footage's own values of what the speech model estimates, as z-scores over its training
    ``frames`` (int [N]): what an avatar calibrates the model's estimates against."""
    valid = np.zeros(len(landmarks), bool)
    valid[frames] = True
    return normalise(raw_targets(landmarks, blendshapes), valid)[0]
