"""SyncTalk++'s Portrait-Sync Generator compositing: the avatar's rendered face is blended into the original
full-resolution frame, so hair, background and torso stay the real footage and no seam shows.

The blend weight is 1 over the face oval grown by `grow`, then falls smoothly to exactly 0 across a band
`feather` wide outside it (both fractions of the face width). Everything is computed in the face's bounding
box padded by that band, never over the whole frame: pixels outside it are the frame's, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.tracking.template import FACE_OVAL

_SHIFT = 4            # cv2.fillPoly fixed-point bits: vertices to 1/16 pixel
_MIN_RING_PX = 2.0    # thinnest colour-matching ring, px
_GAIN_RANGE = (0.5, 2.0)  # colour-match contrast gain limits: a flat ring must not blow the render's contrast up


@dataclass(frozen=True)
class PortraitConfig:
    feather: float = 0.08    # width of the fall-off band outside the grown oval, fraction of the face width
    grow: float = 0.03       # how far the weight-1 region extends beyond the face oval, fraction of the face width
    blur: float = 0.0        # Gaussian sigma (px) blurring the render first, to match the footage's softness
    color_match: bool = True  # match the render's per-channel mean/std to the frame's in a ring inside the edge

    def __post_init__(self) -> None:
        for name in ("feather", "grow", "blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class _Region:
    """The blend weight over the padded face box, and where it lies in the frame."""
    weight: np.ndarray  # float32 [h,w] in [0,1], the frame's box rows y0:y1, columns x0:x1
    ring: np.ndarray    # bool [h,w] the colour-matching ring just inside the weight-1 region's edge
    box: tuple[int, int, int, int]  # x0,y0,x1,y1 clipped to the frame (half-open)


def portrait_mask(landmarks_t: np.ndarray, size: tuple[int, int],
                  config: PortraitConfig = PortraitConfig()) -> np.ndarray:
    """float32 [H,W] blend weight for one frame's landmarks [478,2] in a frame of `size` (W, H)."""
    w, h = size
    mask = np.zeros((h, w), np.float32)
    r = _region(landmarks_t, size, config)
    x0, y0, x1, y1 = r.box
    mask[y0:y1, x0:x1] = r.weight
    return mask


def composite(frame: np.ndarray, render: np.ndarray, landmarks_t: np.ndarray,
              config: PortraitConfig = PortraitConfig(), render_alpha: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H,W,3]: mask*render + (1-mask)*frame, rounded.

    frame: uint8 [H,W,3] RGB, the original. render: float [H,W,3] in [0,1] or uint8, the avatar's render of
    the same frame. render_alpha: optional [H,W] or [H,W,1] in [0,1], the render's coverage, multiplied into
    the mask. Pixels of weight 0 are the frame's, bit for bit.
    """
    h, w = frame.shape[:2]
    if render.shape[:2] != (h, w) or frame.shape[2:] != (3,) or render.shape[2:] != (3,):
        raise ValueError(f"frame {frame.shape} and render {render.shape} must both be [H,W,3] of one size")
    out = frame.copy()
    r = _region(landmarks_t, (w, h), config)
    x0, y0, x1, y1 = r.box
    if x0 >= x1 or y0 >= y1:
        return out
    scale = 1.0 if render.dtype == np.uint8 else 255.0
    src = frame[y0:y1, x0:x1].astype(np.float32)  # [h,w,3] 0..255
    weight = r.weight
    ring = r.ring
    if render_alpha is not None:
        alpha = np.clip(np.asarray(render_alpha, np.float32).reshape(h, w)[y0:y1, x0:x1], 0.0, 1.0)  # [h,w]
        weight = weight * alpha
        ring = ring & (alpha > 0.5)  # match colours only where the render is really there

    rend = _render_crop(render, r.box, config.blur, scale)  # [h,w,3] 0..255
    if config.color_match and np.count_nonzero(ring) >= 16:
        _match_colors(rend, src, ring)
    # src + weight * (rend - src), in place: weight 0 gives src exactly. (cv2: numpy is ~5x slower
    # broadcasting over a last axis of 3.)
    rend -= src
    cv2.multiply(rend, cv2.merge([weight] * 3), dst=rend)
    rend += src
    out[y0:y1, x0:x1] = np.clip(np.rint(rend, out=rend), 0, 255, out=rend).astype(np.uint8)
    return out


def _region(landmarks_t: np.ndarray, size: tuple[int, int], config: PortraitConfig) -> _Region:
    """The blend weight and colour ring over the face oval's box padded by grow + feather.

    The oval is rasterized and distance-transformed in the unclipped padded box, so a face running off the
    frame still gets distances from its own edge, not from the frame's; the result is then clipped.
    """
    w, h = size
    oval = np.asarray(landmarks_t, np.float32)[FACE_OVAL]  # [36,2] px, pixel centres at +0.5
    lo, hi = oval.min(axis=0), oval.max(axis=0)
    face_w = float(hi[0] - lo[0])
    grow, feather = config.grow * face_w, config.feather * face_w  # px
    pad = int(np.ceil(grow + feather)) + 2
    bx0, by0 = (np.floor(lo).astype(int) - pad).tolist()
    bx1, by1 = (np.ceil(hi).astype(int) + pad + 1).tolist()

    inside = np.zeros((by1 - by0, bx1 - bx0), np.uint8)  # [bh,bw]
    poly = np.round((oval - 0.5 - (bx0, by0)) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(inside, [poly], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    # Signed distance to the oval's edge (px, + outside), the edge lying between the pixel centres either side.
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_5)  # [bh,bw] 0 inside
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5)       # [bh,bw] 0 outside
    sdf = np.where(inside.astype(bool), 0.5 - d_in, d_out - 0.5)
    # Past the grown edge t runs 0 -> 1 across the feather band; smoothstep gives weight 1 -> 0.
    t = np.clip((sdf - grow) / feather, 0.0, 1.0) if feather > 0 else (sdf > grow).astype(np.float32)
    weight = (1.0 - t * t * (3.0 - 2.0 * t)).astype(np.float32)  # [bh,bw]
    ring_w = max(0.5 * feather, _MIN_RING_PX)
    ring = (sdf <= grow) & (sdf > grow - ring_w)  # [bh,bw]

    cx0, cy0, cx1, cy1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    crop = np.s_[cy0 - by0:max(cy1, cy0) - by0, cx0 - bx0:max(cx1, cx0) - bx0]
    return _Region(weight[crop], ring[crop], (cx0, cy0, max(cx1, cx0), max(cy1, cy0)))


def _render_crop(render: np.ndarray, box: tuple[int, int, int, int], blur: float, scale: float) -> np.ndarray:
    """float32 [h,w,3] 0..255: the render in `box`, blurred by `blur` px sigma using its real surroundings."""
    x0, y0, x1, y1 = box
    if blur <= 0:
        return np.clip(render[y0:y1, x0:x1].astype(np.float32) * scale, 0.0, 255.0)
    m = int(np.ceil(3.0 * blur))  # read the kernel's reach beyond the box too, so its edge is not reflected
    h, w = render.shape[:2]
    ox0, oy0, ox1, oy1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, w), min(y1 + m, h)
    big = np.clip(render[oy0:oy1, ox0:ox1].astype(np.float32) * scale, 0.0, 255.0)
    big = cv2.GaussianBlur(big, (0, 0), blur)
    return big[y0 - oy0:y1 - oy0, x0 - ox0:x1 - ox0]


def _match_colors(rend: np.ndarray, src: np.ndarray, ring: np.ndarray) -> None:
    """Move each channel's mean/std of rend [h,w,3] over `ring` [h,w] to src's there, in place, so an
    exposure or white-balance difference between render and footage does not outline the face."""
    ring8 = ring.astype(np.uint8)
    mu_r, sd_r = (v.ravel() for v in cv2.meanStdDev(rend, mask=ring8))  # [3] each
    mu_s, sd_s = (v.ravel() for v in cv2.meanStdDev(src, mask=ring8))
    gain = np.clip(sd_s / np.maximum(sd_r, 1e-3), *_GAIN_RANGE)  # [3]
    affine = np.concatenate([np.diag(gain), (mu_s - mu_r * gain)[:, None]], axis=1)  # [3,4]: gain, offset
    cv2.transform(rend, affine.astype(np.float32), dst=rend)
