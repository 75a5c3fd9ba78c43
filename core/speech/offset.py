"""The footage's own audio-to-video offset, found by the speech model: its lip-opening estimate from the sound
against the tracked opening. Footage whose sound was recorded or muxed apart from its picture carries one; removed
before the avatar calibrates, so that the avatar later speaks new speech in sync rather than with the footage's
offset learnt in."""

from __future__ import annotations

import numpy as np

from core.metrics import mouth_sync_r

MAX_OFFSET_S = 0.5      # searched either way


def footage_offset(estimate: np.ndarray, tracked: np.ndarray, max_offset: int = 12) -> tuple[int, float]:
    """(frames, r): how many frames the sound comes late against the picture (negative: early), from the speech
    model's opening estimate [T] and the tracked opening [T], searched within ±max_offset frames, and the
    correlation there."""
    r, lag = mouth_sync_r(estimate, tracked, max_offset)
    return lag, r


def shifted(features: np.ndarray, frames: int) -> np.ndarray:
    """[T,D] features [T,D] moved ``frames`` earlier (row t takes row t + frames; the ends repeat)."""
    idx = np.clip(np.arange(len(features)) + frames, 0, len(features) - 1)
    return features[idx]
