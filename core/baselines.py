"""Trivial baselines an avatar must beat on held-out frames, scored exactly like an avatar's renders.

- mean face: the training frames' faces, each warped onto the held-out frame by a similarity fitted on rigid
  landmarks, averaged;
- audio retrieval: the training frame whose log-mel window is nearest the held-out frame's, warped into place.

Either is composited into the held-out frame through the feathered face mask (core.compose), then tracked
by our own tracker, so its mouth landmarks are measured as a render's would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from core.audio.mel import MelConfig, mel_windows
from core.audio.mouth import mouth_opening
from core.compose.portrait import composite
from core.media import FrameReader
from core.metrics import MOUTH, face_region_mask, lmd, mouth_sync_r, psnr, ssim
from core.tracking.landmarks import detect_landmarks
from core.tracking.template import RIGID_LANDMARKS


@dataclass
class FrameList:
    """In-memory frames with the reader interface the tracker reads (len, size, fps, path, iteration)."""

    frames: list[np.ndarray]      # uint8 [H,W,3] RGB each
    fps: Fraction
    path: Path = Path("<rendered frames>")

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self):
        return iter(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0].shape[:2]
        return w, h


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """float [2,3]: the similarity taking landmarks src [478,2] onto dst [478,2], fitted on rigid points."""
    m, _ = cv2.estimateAffinePartial2D(src[RIGID_LANDMARKS], dst[RIGID_LANDMARKS], method=cv2.LMEDS)
    return m


def mean_face(frames: np.ndarray, landmarks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3]: training frames [N,H,W,3] with landmarks [N,478,2], warped onto the target landmarks
    [478,2] and averaged."""
    h, w = frames.shape[1:3]
    acc = np.zeros((h, w, 3), np.float64)
    for frame, lm in zip(frames, landmarks):
        acc += cv2.warpAffine(frame, similarity(lm, target), (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    return np.round(acc / len(frames)).astype(np.uint8)


def nearest_by_audio(windows: np.ndarray, train: np.ndarray, held: np.ndarray) -> np.ndarray:
    """int [M]: for each held-out frame, the training frame whose mel window (windows [T,80*16]) is nearest."""
    a, b = windows[held], windows[train]                                          # [M,D], [N,D]
    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]              # [M,N] squared L2
    return train[np.argmin(d, axis=1)]


def score(outputs: list[np.ndarray], real: list[np.ndarray], real_landmarks: np.ndarray,
          fps: Fraction) -> dict[str, float]:
    """Issue 6's figures for output frames against the real ones (both uint8 [H,W,3] lists) with the real
    frames' landmarks [M,478,2]: face-region and full-frame PSNR, SSIM, mouth LMD (centred and raw, px) and
    the mouth-opening Pearson r at the best lag within ±3 frames. Outputs are tracked by our tracker."""
    tracked = detect_landmarks(FrameList(outputs, fps)).landmarks                 # [M,478,2]
    size = (real[0].shape[1], real[0].shape[0])
    face = [face_region_mask(lm, size) for lm in real_landmarks]
    r, lag = mouth_sync_r(mouth_opening(tracked), mouth_opening(real_landmarks))
    return {
        "face_psnr": float(np.mean([psnr(o, f, m) for o, f, m in zip(outputs, real, face)])),
        "full_psnr": float(np.mean([psnr(o, f) for o, f in zip(outputs, real)])),
        "ssim": float(np.mean([ssim(o, f) for o, f in zip(outputs, real)])),
        "lmd_centred": lmd(tracked[:, MOUTH], real_landmarks[:, MOUTH], centred=True),
        "lmd_raw": lmd(tracked[:, MOUTH], real_landmarks[:, MOUTH]),
        "mouth_r": r,
        "mouth_lag": float(lag),
    }


def baselines(video: str | Path, audio: np.ndarray, landmarks: np.ndarray, fps: Fraction, holdout: float = 0.2,
              mean_of: int = 64) -> dict[str, dict[str, float]]:
    """Scores of the mean face (over ``mean_of`` evenly spaced training frames) and audio retrieval on the
    held-out last ``holdout`` of the clip."""
    t = len(landmarks)
    n = int(round(t * (1 - holdout)))
    train, held = np.arange(n), np.arange(n, t)
    with FrameReader(video) as reader:
        frames = np.stack(list(reader))                                           # [T,H,W,3]
    windows = mel_windows(audio, t, fps, MelConfig()).flatten(1).numpy()          # [T,80*16]
    pool = np.linspace(0, n - 1, min(mean_of, n)).round().astype(int)
    nearest = nearest_by_audio(windows, train, held)
    h, w = frames.shape[1:3]
    outputs: dict[str, list[np.ndarray]] = {"mean face": [], "audio retrieval": []}
    for i, j in zip(held, nearest):
        face = mean_face(frames[pool], landmarks[pool], landmarks[i])
        retrieved = cv2.warpAffine(frames[j], similarity(landmarks[j], landmarks[i]), (w, h),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        outputs["mean face"].append(composite(frames[i], face, landmarks[i]))
        outputs["audio retrieval"].append(composite(frames[i], retrieved, landmarks[i]))
    real = [frames[i] for i in held]
    return {name: score(out, real, landmarks[held], fps) for name, out in outputs.items()}
