"""Portrait compositing (SyncTalk++'s Portrait-Sync Generator) on real footage: the mask covers mouth and chin
and falls off monotonically, weight-0 pixels stay the frame's bit for bit, and the seam of a render that is
close but not exact is no more visible than frame-to-frame noise."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from core.compose.portrait import PortraitConfig, composite, portrait_mask
from core.media import FrameReader
from core.project import Project
from core.tracking.regions import face_oval_mask
from core.tracking.template import FACE_OVAL, LIPS
from core.tracking.track import load_tracking

FRAME = 100
CHIN = [152, 148, 176, 377, 400]  # the chin's points on the face oval


@pytest.fixture(scope="module")
def may(tracked_project, media_dir):
    """may_13s frames 100 and 101 (uint8 [512,512,3]) and frame 100's landmarks [478,2]."""
    landmarks = load_tracking(Project.open(tracked_project("may_13s.mp4")))["landmarks"]
    with FrameReader(media_dir / "may_13s.mp4") as reader:
        return reader.read(FRAME).copy(), reader.read(FRAME + 1).copy(), landmarks[FRAME]


def _near_render(frame: np.ndarray) -> np.ndarray:
    """float32 [H,W,3] in [0,1]: the frame 12/255 brighter and mildly blurred, a render close but not exact."""
    return cv2.GaussianBlur(np.clip(frame.astype(np.float32) / 255 + 12 / 255, 0, 1), (0, 0), 1.0)


def _at(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """image values at the pixels holding points [N,2] (px, pixel centres at +0.5)."""
    ij = np.floor(points).astype(int)
    return image[ij[:, 1], ij[:, 0]]


def test_mask_covers_mouth_and_chin_and_falls_off_monotonically(may):
    frame, _, lm = may
    h, w = frame.shape[:2]
    mask = portrait_mask(lm, (w, h))
    assert mask.dtype == np.float32 and mask.shape == (h, w)
    assert mask.min() == 0.0 and mask.max() == 1.0
    assert (_at(mask, lm[LIPS]) == 1.0).all() and (_at(mask, lm[CHIN]) == 1.0).all()

    # Along rays from the face centre (sampled bilinearly every half pixel) the weight never rises.
    centre = lm[FACE_OVAL].mean(axis=0)
    face_w = np.ptp(lm[FACE_OVAL, 0])
    for a in np.linspace(0, 2 * np.pi, 72, endpoint=False):
        s = np.arange(0, 2 * face_w, 0.5)
        pts = (centre + s[:, None] * (np.cos(a), np.sin(a)) - 0.5).astype(np.float32)  # [S,2] cv2 pixel coords
        vals = cv2.remap(mask, pts[None, :, 0], pts[None, :, 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)[0]  # [S]
        assert vals[0] == 1.0 and vals[-1] == 0.0
        assert (np.diff(vals) <= 0).all(), f"mask rises along the ray at {np.degrees(a):.0f} deg"

    # The fall-off lies outside the face oval, within grow + feather of it.
    oval = face_oval_mask(lm, (w, h))
    assert not oval[(mask > 0) & (mask < 1)].any()
    cfg = PortraitConfig()
    r = int(np.ceil((cfg.grow + cfg.feather) * face_w)) + 2
    near = cv2.dilate(oval.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    assert not (mask[near == 0] > 0).any()


def test_weight_zero_pixels_are_the_frame_and_self_composite_is_identity(may):
    frame, _, lm = may
    h, w = frame.shape[:2]
    mask = portrait_mask(lm, (w, h))
    noise = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    out = composite(frame, noise, lm)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    assert not np.array_equal(out[mask == 1], frame[mask == 1])

    for render in (frame, frame.astype(np.float32) / 255):
        same = composite(frame, render, lm)
        assert np.abs(same.astype(int) - frame).max() <= 1

    # The render's alpha is multiplied in: where it covers nothing, the frame stays.
    assert np.array_equal(composite(frame, noise, lm, render_alpha=np.zeros((h, w, 1))), frame)
    half = np.zeros((h, w), np.float32)
    half[:, : w // 2] = 1.0
    out = composite(frame, noise, lm, render_alpha=half)
    assert np.array_equal(out[:, w // 2:], frame[:, w // 2:])
    assert not np.array_equal(out[:, : w // 2], frame[:, : w // 2])


def test_face_running_off_the_frame(may):
    """The oval's own edge, not the frame's, shapes the fall-off; blur reads the render beyond the face box."""
    frame, _, lm = may
    h, w = frame.shape[:2]
    shifted = lm - (200, 0)  # the face's left half off the frame
    mask = portrait_mask(shifted, (w, h))
    assert mask[:, 0].max() == 1.0 and mask[:, -1].max() == 0.0
    np.testing.assert_array_equal(mask[:, : w - 200], portrait_mask(lm, (w, h))[:, 200:])
    out = composite(frame, _near_render(frame), shifted, PortraitConfig(blur=1.5))
    assert np.array_equal(out[mask == 0], frame[mask == 0]) and not np.array_equal(out, frame)
    assert np.array_equal(composite(frame, _near_render(frame), lm - (1000, 0)), frame)


def test_seam_is_no_more_visible_than_frame_to_frame_noise(may, artifacts_dir):
    frame, nxt, lm = may
    h, w = frame.shape[:2]
    mask = portrait_mask(lm, (w, h))
    render = _near_render(frame)
    seam = (mask > 0.05) & (mask < 0.95)
    background = mask == 0
    noise = np.abs(nxt.astype(np.float32) - frame)[background].mean()  # frames 100 vs 101, untouched region

    def seam_mad(color_match: bool) -> tuple[np.ndarray, float]:
        out = composite(frame, render, lm, PortraitConfig(color_match=color_match))
        return out, float(np.abs(out.astype(np.float32) - frame)[seam].mean())

    out, matched = seam_mad(True)
    _, unmatched = seam_mad(False)
    print(f"\nseam ring MAD: {matched:.2f} colour-matched, {unmatched:.2f} not; "
          f"background frame-to-frame MAD {noise:.2f} (levels of 255)")
    assert matched <= 2 * noise
    assert unmatched > matched

    grey = np.repeat(np.rint(mask * 255).astype(np.uint8)[..., None], 3, axis=2)
    row = np.concatenate([frame, np.rint(render * 255).astype(np.uint8), out, grey], axis=1)
    path = artifacts_dir / "compose_portrait.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
