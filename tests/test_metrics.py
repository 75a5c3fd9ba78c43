"""core.metrics: PSNR, SSIM (against a direct implementation of Wang et al.'s formula), landmark distance,
mouth-opening sync and the face-region mask; then on real footage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import MOUTH, face_region_mask, lmd, mouth_sync_r, psnr, ssim
from core.tracking.regions import face_oval_mask
from core.tracking.template import FACE_OVAL, LIPS


def _image(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# --- PSNR ------------------------------------------------------------------------------------------

def test_psnr_identical_is_inf():
    a = _image(0)
    assert psnr(a, a) == math.inf


def test_psnr_known_uniform_error():
    a = _image(0).clip(0, 245)
    assert psnr(a, a + 10) == pytest.approx(20 * math.log10(255 / 10), abs=1e-6)


def test_psnr_mask_counts_only_masked_pixels():
    a = _image(1).clip(0, 245)
    b = a + 10
    mask = np.zeros(a.shape[:2], bool)
    mask[8:20, 4:30] = True
    noisy = b.copy()
    noisy[~mask] = 255 - noisy[~mask]          # large errors outside the mask
    expected = 20 * math.log10(255 / 10)
    assert psnr(a, noisy, mask) == pytest.approx(expected, abs=1e-6)
    assert psnr(a, noisy) < expected - 5


def test_psnr_uint8_and_float_agree():
    a, b = _image(2), _image(3)
    assert psnr(a, b) == pytest.approx(psnr(a / 255.0, b.astype(np.float32) / 255), abs=1e-6)


# --- SSIM ------------------------------------------------------------------------------------------

def _ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 straight from the formula: 11x11 Gaussian window (sigma 1.5) around every pixel,
    edges mirrored, population (co)variances, K1=0.01, K2=0.03, L=1; the mean over pixels at least 5 from
    the edge, per channel, then over channels (skimage's gaussian_weights=True definition)."""
    x = np.arange(-5, 6)
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()                   # [11,11]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    h, wd = a.shape[:2]
    per_channel = []
    for c in range(a.shape[2]):
        pa = np.pad(a[..., c] / 255.0, 5, mode="symmetric")
        pb = np.pad(b[..., c] / 255.0, 5, mode="symmetric")
        values = []
        for i in range(5, h - 5):
            for j in range(5, wd - 5):
                wa, wb = pa[i:i + 11, j:j + 11], pb[i:i + 11, j:j + 11]
                ma, mb = (w * wa).sum(), (w * wb).sum()
                va, vb = (w * (wa - ma) ** 2).sum(), (w * (wb - mb) ** 2).sum()
                cov = (w * (wa - ma) * (wb - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


def test_ssim_identical_is_one():
    a = _image(4)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_direct_formula():
    a = _image(5)
    b = (a * 0.6 + _image(6) * 0.4).astype(np.uint8)           # related but different
    assert ssim(a, b) == pytest.approx(_ssim_direct(a, b), abs=1e-6)
    assert ssim(a, _image(7)) == pytest.approx(_ssim_direct(a, _image(7)), abs=1e-6)


def test_ssim_falls_with_noise_and_is_symmetric():
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    clean = np.stack([xx, yy, 0.5 + 0.4 * np.sin(6 * xx) * np.cos(5 * yy)], axis=-1) * 0.8 + 0.1
    noise = rng.standard_normal(clean.shape)
    scores = [ssim(clean, clean + s * noise) for s in (0.0, 0.01, 0.03, 0.1, 0.3)]
    assert scores[0] == pytest.approx(1.0)
    assert all(x > y for x, y in zip(scores, scores[1:]))
    noisy = clean + 0.1 * noise
    assert ssim(clean, noisy) == pytest.approx(ssim(noisy, clean), abs=1e-12)


def test_ssim_mask():
    a = _image(9)
    b = a.copy()
    b[:, 16:] = _image(10)[:, 16:]                              # right half replaced
    left = np.zeros(a.shape[:2], bool)
    left[:, :8] = True                                          # far enough from the change: the window misses it
    assert ssim(a, b, left) == pytest.approx(1.0)
    assert ssim(a, b, np.ones_like(left)) == ssim(a, b) < 0.7
    with pytest.raises(ValueError):
        ssim(a, b, np.zeros_like(left))


# --- landmarks and lip-sync -------------------------------------------------------------------------

def test_lmd_shift():
    real = np.random.default_rng(11).uniform(0, 500, (7, 40, 2))
    pred = real + np.array([3.0, 4.0])
    assert lmd(pred, real) == pytest.approx(5.0)
    assert lmd(pred, real, centred=True) == pytest.approx(0.0, abs=1e-9)
    assert np.array_equal(MOUTH, LIPS)


def _speech_like(n: int, seed: int) -> np.ndarray:
    """A mouth-opening-like series: smoothed noise (a few frames' correlation), so lags are distinguishable."""
    x = np.random.default_rng(seed).standard_normal(n + 4)
    return np.convolve(x, np.ones(3) / 3, mode="valid")[:n].clip(0, None)


def test_mouth_sync_finds_the_delay():
    real = _speech_like(200, 12)
    delayed = np.concatenate([np.zeros(2), real[:-2]])          # pred[t] = real[t - 2]: pred lags real by 2
    r, lag = mouth_sync_r(delayed, real)
    assert lag == 2 and r == pytest.approx(1.0, abs=1e-9)


def test_mouth_sync_sign_convention():
    real = _speech_like(200, 13)
    early = real[3:]                                            # pred[t] = real[t + 3]: pred leads real
    r, lag = mouth_sync_r(early, real[:-3], max_lag=4)
    assert lag == -3 and r == pytest.approx(1.0, abs=1e-9)
    assert mouth_sync_r(real, real) == (pytest.approx(1.0), 0)


def test_mouth_sync_constant_series():
    r, lag = mouth_sync_r(np.full(50, 0.3), _speech_like(50, 14))
    assert (r, lag) == (0.0, 0) and not math.isnan(r)


# --- face region -------------------------------------------------------------------------------------

def test_face_region_mask_grows():
    lm = np.zeros((478, 2))
    angle = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    lm[FACE_OVAL] = np.stack([100 + 40 * np.cos(angle), 90 + 50 * np.sin(angle)], axis=1)  # 80 px wide
    oval = face_oval_mask(lm, (200, 180))
    assert np.array_equal(face_region_mask(lm, (200, 180)), oval)
    grown = face_region_mask(lm, (200, 180), grow=0.1)         # 8 px
    assert grown.shape == (180, 200) and (grown >= oval).all()
    assert grown[90, 100 + 40 + 6] and not oval[90, 100 + 40 + 6] and not grown[90, 100 + 40 + 10]


# --- real footage --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_frames(media_dir, tracked_project):
    from core.media import FrameReader
    from core.project import Project
    from core.tracking.track import load_tracking

    landmarks = load_tracking(Project.open(tracked_project("may_13s.mp4")))["landmarks"]  # [T,478,2]
    reader = FrameReader(media_dir / "may_13s.mp4")
    f100, f101, f300 = reader.read(100), reader.read(101), reader.read(300)
    mask = face_region_mask(landmarks[100], reader.size, grow=0.05)
    assert 0.05 < mask.mean() < 0.6
    assert psnr(f100, f100) == math.inf and psnr(f100, f100, mask) == math.inf
    near, far = psnr(f100, f101, mask), psnr(f100, f300, mask)
    assert math.isfinite(near) and near > far
    assert ssim(f100, f101, mask) > ssim(f100, f300, mask)
