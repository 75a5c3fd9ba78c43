"""How a clip's frames are split, and how side-by-side features are laid out: small rules that the audio stage,
avatar training, evaluation and the benchmarks share, kept apart from any one stage's training code."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

MIN_TRAIN_FRAMES = 5   # the audio-visual sync discriminator's window (core.audio.ave.SYNC_FRAMES) fits in


def training_frames(n_frames: int, holdout: float) -> int:
    """How many leading frames are trained on; the rest, the last ``holdout`` of the clip, are held out."""
    return max(MIN_TRAIN_FRAMES, int(round(n_frames * (1 - holdout))))


def trained_on(valid: np.ndarray, holdout: float) -> np.ndarray:
    """int [N]: the frames training reads: those before the held-out tail with a face in view (``valid`` bool
    [T], tracking's: detected, or bridged over a short gap). Frames without a face are neither learnt from nor
    rendered over."""
    return np.flatnonzero(valid[:training_frames(len(valid), holdout)])


def feature_blocks(blocks: Sequence[int], width: int) -> list[slice]:
    """The column slices of encoders ``blocks`` wide that lie side by side in features ``width`` wide (one
    slice over all of them for no blocks); ValueError when the widths do not add up."""
    edges = np.cumsum([0, *(blocks or [width])])
    if edges[-1] != width:
        raise ValueError(f"blocks {list(blocks)} do not add up to the features' width {width}")
    return [slice(int(lo), int(hi)) for lo, hi in pairwise(edges)]
