"""A visible mark on synthetic frames: a short line of text in a corner, legible on any background."""

from __future__ import annotations

import cv2
import numpy as np

WATERMARK_TEXT = "AI-generated \u00b7 Avatar Studio"
_FONT = cv2.FONT_HERSHEY_DUPLEX


def stamp(frame: np.ndarray, text: str = WATERMARK_TEXT, opacity: float = 0.8) -> np.ndarray:
    """uint8 [H,W,3]: ``frame`` with ``text`` in its bottom-right corner, white on a translucent dark band, its
    height 3% of the frame's (at least 9 px) so it reads the same at any output size. ``frame`` is not changed."""
    h, w = frame.shape[:2]
    text = text.replace("\u00b7", "-")  # Hershey fonts are ASCII
    px = max(9.0, 0.03 * h)
    scale = cv2.getFontScaleFromHeight(_FONT, round(px), 1)
    thick = max(1, round(px / 12))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    pad, margin = round(px * 0.4), round(px * 0.6)
    x1, y1 = w - margin, h - margin                        # the band's bottom-right corner
    x0, y0 = max(0, x1 - tw - 2 * pad), max(0, y1 - th - base - 2 * pad)
    out = frame.copy()
    band = out[y0:y1, x0:x1]
    band[:] = (band.astype(np.float32) * 0.45).astype(np.uint8)   # darken what is behind the text
    overlay = out.copy()
    cv2.putText(overlay, text, (x0 + pad, y1 - pad - base), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return cv2.addWeighted(overlay, opacity, out, 1.0 - opacity, 0.0)
