"""Image and lip-sync metrics for judging a rendered avatar against the real frames it should reproduce.

Images are uint8 (read as /255) or float in [0, 1], [H,W,3] RGB; masks are bool [H,W]. Landmarks are in
pixels. PSNR and SSIM over the face region (:func:`face_region_mask`) keep a static background from
flattering a poor face; landmark distance and mouth-opening correlation measure the lips alone.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from core.tracking.regions import face_oval_mask
from core.tracking.template import FACE_OVAL, LIPS

MOUTH = LIPS  # lip landmark ids: lmd(pred[:, MOUTH], real[:, MOUTH])

# SSIM as Wang et al. 2004 and skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
# use_sample_covariance=False, data_range=1): an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_PAD = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: window radius; this border is left out of the mean
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _float(img: np.ndarray) -> np.ndarray:
    """float64 in [0, 1]: uint8 images scaled by 1/255, float images as they are."""
    img = np.asarray(img)
    return img / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _float(a), _float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _masked_mean(values: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean of values [H,W] over mask [H,W] (all pixels when None); ValueError on an empty mask."""
    if mask is None:
        return float(values.mean())
    mask = np.asarray(mask, bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {values.shape}")
    if not mask.any():
        raise ValueError("mask selects no pixels")
    return float(values[mask].mean())


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (peak 1) of images [H,W,3], over the masked pixels; inf when equal."""
    a, b = _pair(a, b)
    mse = _masked_mean(((a - b) ** 2).mean(axis=-1), mask)  # per-pixel mean over channels [H,W] -> scalar
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [H,W]: the SSIM of images [H,W,3] at every pixel, averaged over the RGB channels.

    Local statistics under the Gaussian window, image borders reflected (scipy's 'reflect', as skimage)."""
    a, b = _pair(a, b)
    a, b = np.atleast_3d(a), np.atleast_3d(b)   # [H,W,C]

    def blur(x: np.ndarray) -> np.ndarray:       # per channel, [H,W,C]
        return gaussian_filter(x, sigma=(SSIM_SIGMA, SSIM_SIGMA, 0), truncate=SSIM_TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2           # data range 1
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean(axis=-1)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity of images [H,W,3], the RGB channels averaged (skimage's channel_axis=2 value).

    The mean of :func:`ssim_map` over the masked pixels, leaving out a SSIM_PAD-pixel border where the
    window hangs over the image edge (as skimage does), so ``mask=None`` equals an all-True mask."""
    s = ssim_map(a, b)                                # [H,W]
    inside = np.zeros(s.shape, bool)
    inside[SSIM_PAD:-SSIM_PAD, SSIM_PAD:-SSIM_PAD] = True
    return _masked_mean(s, inside if mask is None else inside & np.asarray(mask, bool))


def lmd(pred: np.ndarray, real: np.ndarray, centred: bool = False) -> float:
    """Landmark distance: mean Euclidean distance in pixels between landmarks pred and real [T,N,2].

    ``centred`` first moves each frame's point set to its mean, so a global shift (the head placed a little
    differently) does not count, only the shape of, say, the lips."""
    pred, real = np.asarray(pred, np.float64), np.asarray(real, np.float64)
    if pred.shape != real.shape:
        raise ValueError(f"landmarks differ in shape: {pred.shape} vs {real.shape}")
    if centred:
        pred = pred - pred.mean(axis=-2, keepdims=True)
        real = real - real.mean(axis=-2, keepdims=True)
    return float(np.linalg.norm(pred - real, axis=-1).mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two series [T]; 0 when either is constant (no correlation, not NaN or rounding noise)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def mouth_sync_r(pred_open: np.ndarray, real_open: np.ndarray, max_lag: int = 3) -> tuple[float, int]:
    """(r, lag): the highest Pearson r between mouth-opening series pred_open [T] and real_open [T'] with
    pred shifted by lag in -max_lag..max_lag frames, over the frames both cover.

    Positive lag: pred lags real (pred[t] is compared with real[t - lag]). A good lip-sync has r near 1
    at lag 0. Ties go to the smallest |lag|; constant series give r 0."""
    pred, real = np.asarray(pred_open, np.float64), np.asarray(real_open, np.float64)
    if min(len(pred), len(real)) - max_lag < 2:
        raise ValueError(f"series of {len(pred)} and {len(real)} frames are too short for lags up to {max_lag}")
    best = (-np.inf, 0)
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        t0, t1 = max(0, lag), min(len(pred), len(real) + lag)   # pred frames t with real frame t - lag
        p, q = pred[t0:t1], real[t0 - lag:t1 - lag]
        r = pearson(p, q)
        if r > best[0]:
            best = (r, lag)
    return best


def lag_r(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], lag: int) -> float | None:
    """Pearson r with every estimate of ``pairs`` (estimate [T], real [T], valid [T]) shifted by ``lag`` frames within
    its own clip (estimate frame t against real frame t - lag), the frames where both are valid pooled; None when
    no clip is long enough for that lag."""
    ps, qs = [], []
    for pred, real, valid in pairs:
        t0, t1 = max(0, lag), min(len(pred), len(real) + lag)
        if t1 - t0 < 2:
            continue
        keep = valid[t0:t1] & valid[t0 - lag:t1 - lag]
        ps.append(np.asarray(pred[t0:t1])[keep])
        qs.append(np.asarray(real[t0 - lag:t1 - lag])[keep])
    return pearson(np.concatenate(ps), np.concatenate(qs)) if ps else None


def best_lag_r(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_lag: int = 3) -> tuple[float, int]:
    """(r, lag) as ``mouth_sync_r`` but pooled over several clips (``lag_r``): ties go to the smallest |lag|."""
    best = (-np.inf, 0)
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        r = lag_r(pairs, lag)
        if r is None:
            raise ValueError(f"the series are too short for lags up to {max_lag}")
        if r > best[0]:
            best = (r, lag)
    return best


def fractional_lag(pred: np.ndarray, real: np.ndarray, valid: np.ndarray, max_lag: int = 6) -> tuple[float, float]:
    """(lag, r): the lag in frames, to a fraction of a frame, at which estimate ``pred`` [T] best follows ``real`` [T]
    over the ``valid`` [T] frames (sign as ``mouth_sync_r``), the vertex of a parabola through the best integer
    lag's r and its neighbours; r at the best integer lag."""
    lags = np.arange(-max_lag, max_lag + 1)
    rs = np.array([lag_r([(pred, real, valid)], int(lag)) for lag in lags], np.float64)   # [2*max_lag+1]
    if np.isnan(rs).any():
        raise ValueError(f"a series of {len(pred)} frames is too short for lags up to {max_lag}")
    i = int(np.argmax(rs))
    if 0 < i < len(rs) - 1 and (bend := rs[i - 1] - 2 * rs[i] + rs[i + 1]) < 0:
        return float(lags[i] + 0.5 * (rs[i - 1] - rs[i + 1]) / bend), float(rs[i])
    return float(lags[i]), float(rs[i])


def face_region_mask(landmarks_t: np.ndarray, size: tuple[int, int], grow: float = 0.0) -> np.ndarray:
    """bool [H,W]: the face oval of one frame's landmarks [478,2] (size = (W, H)), dilated by ``grow`` times
    the face's width (the oval's horizontal extent) to take in the hairline and jaw edge."""
    mask = face_oval_mask(landmarks_t, size)
    radius = int(round(grow * float(np.ptp(landmarks_t[FACE_OVAL, 0]))))
    if radius <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def seam_errors(output: np.ndarray, source: np.ndarray, blend: np.ndarray, ring_px: int = 2,
                gap_px: int = 12) -> tuple[float, float]:
    """How visible a composite's seam is: the mean |output - source| (grey levels, channels averaged) over the
    ring of pixels within ``ring_px`` of the blend weight's outer edge (where ``blend`` [H,W] falls to 0), and
    over the background farther than ``gap_px`` from it, which only encoding changed. An invisible seam gives
    a ring error close to the background's; a pasted face with a hard edge, several times it."""
    inside = (np.asarray(blend) > 0).astype(np.uint8)                           # [H,W]
    ring_k = np.ones((2 * ring_px + 1,) * 2, np.uint8)
    ring = cv2.dilate(inside, ring_k) & (1 - cv2.erode(inside, ring_k))
    background = 1 - cv2.dilate(inside, np.ones((2 * gap_px + 1,) * 2, np.uint8))
    err = np.abs(output.astype(np.float32) - source.astype(np.float32)).mean(axis=2)  # [H,W]
    return float(err[ring.astype(bool)].mean()), float(err[background.astype(bool)].mean())
