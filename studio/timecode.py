"""Frame <-> timecode text (HH:MM:SS:FF at the footage's rate)."""

from __future__ import annotations

import math
from fractions import Fraction


def timecode(frame: int, fps: Fraction) -> str:
    base = max(1, math.ceil(fps))  # frames per timecode second (non-drop)
    ff = frame % base
    s = frame // base
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}"
