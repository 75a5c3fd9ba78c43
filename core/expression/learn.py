"""Fitting the Expression Generator (``core.expression.generator``) on tracked corpus clips: the blinks' intervals
and mean curve, and the brows' ridge from speech with its residual process. Speakers held out are never seen;
the figures say how the brows' estimate does on them."""

from __future__ import annotations

import numpy as np

from core.expression.generator import (BLINK_COLUMNS, BROW_COLUMNS, MIN_GAP_S, PROFILE_MS, ExpressionModel,
                                       detect_blinks, pooled, resting_level)
from core.speech.corpus import Clip

RIDGES = (1e2, 1e3, 1e4, 1e5, 1e6)  # tried on the training speakers' own folds; the best is kept


def blink_track(clip: Clip) -> np.ndarray:
    """float [T]: the clip's eyelids (eyeBlink left and right averaged)."""
    return clip.blendshapes[:, BLINK_COLUMNS].mean(axis=1)


def brow_z(clip: Clip) -> np.ndarray:
    """float [T,5]: the clip's brows as z-scores over its face frames."""
    brows = clip.blendshapes[:, BROW_COLUMNS].astype(np.float64)
    seen = brows[clip.valid] if clip.valid.any() else brows
    return (brows - seen.mean(0)) / (seen.std(0) + 1e-4)


def fit_blinks(clips: list[Clip]) -> tuple[float, float, np.ndarray]:
    """(gamma shape, gamma scale in s, mean blink curve over PROFILE_MS) of the clips' blinks."""
    intervals, curves = [], []
    for c in clips:
        fps = float(c.fps)
        track = blink_track(c)
        rise = track - resting_level(track, fps)
        found = [b for b in detect_blinks(track, fps) if c.valid[b.start:b.end + 1].all()]
        peaks = np.array([b.peak for b in found]) / fps
        intervals += [d for d in np.diff(peaks) if d >= MIN_GAP_S]
        t = np.arange(len(track)) / fps * 1000
        for b in found:
            curves.append(np.interp(PROFILE_MS + b.peak / fps * 1000, t, rise, left=0, right=0) / b.height)
    intervals = np.array(intervals)
    if len(intervals) < 2:
        raise ValueError("too few blinks in the clips to learn their rhythm")
    mean, var = intervals.mean(), intervals.var()
    profile = np.clip(np.mean(curves, axis=0), 0, None)
    return float(mean * mean / var), float(var / mean), profile / profile.max()


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """[F,K] weights of a ridge from x [N,F] to y [N,K], the bias column (the last) not shrunk."""
    reg = lam * np.eye(x.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(x.T @ x + reg, x.T @ y)


def _brow_data(clips: list[Clip]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per clip: pooled states [T',F] and brow z-scores [T',5] of its face frames, and its fps."""
    out = []
    for c in clips:
        x = pooled(c.states, len(c.valid), c.fps)
        out.append((x[c.valid], brow_z(c)[c.valid], float(c.fps)))
    return out


def _r(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over columns of Pearson's r between a [N,K] and b [N,K]."""
    rs = [np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(a.shape[1]) if a[:, k].std() > 0 and b[:, k].std() > 0]
    return float(np.mean(rs)) if rs else 0.0


def fit_brows(clips: list[Clip], speakers: list[str]) -> tuple[np.ndarray, float, float, float]:
    """(ridge weights [F,5], AR(1) coefficient at 25 fps, residual std, ridge λ) of the brows from speech; λ
    picked by leaving each training speaker out in turn (``speakers``: each clip's speaker)."""
    data = _brow_data(clips)
    names = sorted(set(speakers))
    best, best_r = RIDGES[0], -np.inf
    folds = [names[i::4] for i in range(min(4, len(names)))]
    for lam in RIDGES:
        scores = []
        for held in folds:
            train = [d for d, s in zip(data, speakers) if s not in held]
            test = [d for d, s in zip(data, speakers) if s in held]
            if not train or not test:
                continue
            w = _ridge(np.concatenate([d[0] for d in train]), np.concatenate([d[1] for d in train]), lam)
            scores.append(np.mean([_r(d[0] @ w, d[1]) for d in test]))
        if scores and np.mean(scores) > best_r:
            best, best_r = lam, float(np.mean(scores))
    w = _ridge(np.concatenate([d[0] for d in data]), np.concatenate([d[1] for d in data]), best)
    ars, residuals = [], []
    for x, y, fps in data:
        e = y - x @ w
        if len(e) > 2:
            lag1 = np.mean([np.corrcoef(e[:-1, k], e[1:, k])[0, 1] for k in range(e.shape[1])])
            ars.append(max(lag1, 0.0) ** (fps / 25.0))
        residuals.append(e)
    return w.astype(np.float32), float(np.median(ars)), float(np.concatenate(residuals).std()), best


def fit_generator(clips: list[Clip]) -> ExpressionModel:
    """The Expression Generator learnt from ``clips`` (tracked corpus clips, their speakers the training ones)."""
    shape, scale, profile = fit_blinks(clips)
    weights, ar, residual, _ = fit_brows(clips, [c.row.speaker for c in clips])
    return ExpressionModel(shape, scale, profile, weights, ar, residual)


def brow_r(model: ExpressionModel, clips: list[Clip]) -> float:
    """Mean r between the brows' speech estimate and the tracked brows over ``clips``' face frames."""
    return float(np.mean([_r(x @ model.brow_weights, y) for x, y, _ in _brow_data(clips)]))
