"""Fitting the Expression Generator (``core.expression.generator``) on tracked corpus clips: the blinks' intervals
and mean curve, and the brows' ridge from speech with its residual process. Speakers held out are never seen;
the figures say how the brows' estimate does on them."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import to_dict
from core.errors import AvatarStudioError
from core.expression.codebook import SHIPPED_FILE as CODEBOOK_FILE
from core.expression.codebook import CodebookConfig, ExpressionVQ, fit, prior_tracks, save_codebook
from core.expression.generator import (BLINK_COLUMNS, BROW_COLUMNS, PROFILE_MS, SLOW_S, BrowProcess,
                                       ExpressionModel, GeneratorConfig, Subject, blink_stats, detect_blinks,
                                       generate, pooled, resting_level, save_generator, slow_and_fast)
from core.fsutil import atomic_write_bytes
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.project import file_sha256
from core.speech.corpus import Clip, load_corpus
from core.speech.frontend import Frontend
from core.tracking.landmarks import EXPRESSION_BLENDSHAPES

RIDGES = (1e2, 1e3, 1e4, 1e5, 1e6)  # tried on the training speakers' own folds; the best is kept
RATE_MIN_S = 10.0                    # clips with at least this much face say how often people blink


def blink_track(clip: Clip) -> np.ndarray:
    """float [T]: the clip's eyelids (eyeBlink left and right averaged)."""
    return clip.blendshapes[:, BLINK_COLUMNS].mean(axis=1)


def brow_z(clip: Clip) -> np.ndarray:
    """float [T,5]: the clip's brows as z-scores over its face frames."""
    brows = clip.blendshapes[:, BROW_COLUMNS].astype(np.float64)
    seen = brows[clip.valid] if clip.valid.any() else brows
    return (brows - seen.mean(0)) / (seen.std(0) + 1e-4)


def fit_blinks(clips: list[Clip]) -> tuple[float, float, np.ndarray]:
    """(gamma shape, gamma scale in s, mean blink curve over PROFILE_MS) of the clips' blinks. The rate is the
    median person's (clips of at least ``RATE_MIN_S`` of face; one frequent blinker must not set it for all); the
    shape, how regular the intervals are, from each clip's intervals over its own mean."""
    relative, curves, rates = [], [], []
    for c in clips:
        fps = float(c.fps)
        track = blink_track(c)
        rise = track - resting_level(track, fps)
        found = [b for b in detect_blinks(track, fps) if c.valid[b.start:b.end + 1].all()]
        if c.valid.sum() / fps >= RATE_MIN_S:
            rates.append(len(found) / (c.valid.sum() / fps / 60))
        intervals = np.diff(np.array([b.peak for b in found]) / fps)
        if len(intervals) >= 2:
            relative += list(intervals / intervals.mean())
        t = np.arange(len(track)) / fps * 1000
        for b in found:
            curves.append(np.interp(PROFILE_MS + b.peak / fps * 1000, t, rise, left=0, right=0) / b.height)
    if len(relative) < 2 or not rates:
        raise AvatarStudioError(f"too few blinks in the clips to learn their rhythm ({len(curves)} found): the "
                                "generator needs several clips with a few blinks each; add clips or longer ones")
    shape = 1.0 / max(float(np.var(relative)), 1e-3)
    mean_interval = 60.0 / max(float(np.median(rates)), 1.0)
    profile = np.clip(np.mean(curves, axis=0), 0, None)
    return shape, mean_interval / shape, profile / profile.max()


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


def _lag1(x: np.ndarray) -> float:
    """Mean over columns of the lag-1 autocorrelation of x [N,K]."""
    return float(np.mean([np.corrcoef(x[:-1, k], x[1:, k])[0, 1] for k in range(x.shape[1]) if x[:, k].std() > 0]))


def fit_process(residuals: list[tuple[np.ndarray, float]]) -> BrowProcess:
    """The two AR(1) processes (slow motion, frame-to-frame jitter) of the brows' residuals [(z [N,5], fps)]:
    each one's variance and per-frame coefficient at 25 fps."""
    slow, fast, a_slow, a_fast = [], [], [], []
    for e, fps in residuals:
        if len(e) < 4 * SLOW_S * fps:
            continue
        s, f = slow_and_fast(e, fps)
        slow.append(s)
        fast.append(f)
        a_slow.append(max(_lag1(s), 0.0) ** (fps / 25))
        a_fast.append(max(_lag1(f), 0.0) ** (fps / 25))
    return BrowProcess(float(np.concatenate(slow).std()), float(np.median(a_slow)),
                       float(np.concatenate(fast).std()), float(np.median(a_fast)))


def fit_brows(clips: list[Clip], speakers: list[str]) -> tuple[np.ndarray, BrowProcess, float]:
    """(ridge weights [F,5], the residual's process, ridge λ) of the brows from speech; λ picked by leaving the
    training speakers out a quarter at a time (``speakers``: each clip's speaker)."""
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
    return w.astype(np.float32), fit_process([(y - x @ w, fps) for x, y, fps in data]), best


def fit_generator(clips: list[Clip]) -> ExpressionModel:
    """The Expression Generator learnt from ``clips`` (tracked corpus clips, their speakers the training ones)."""
    shape, scale, profile = fit_blinks(clips)
    weights, process, _ = fit_brows(clips, [c.row.speaker for c in clips])
    return ExpressionModel(shape, scale, profile, weights, process)


def brow_r(model: ExpressionModel, clips: list[Clip]) -> float:
    """Mean r between the brows' speech estimate and the tracked brows over ``clips``' face frames."""
    return float(np.mean([_r(x @ model.brow_weights, y) for x, y, _ in _brow_data(clips)]))


HELD_OUT = 3  # speakers (those with the most face) kept out of the validation model


@dataclass
class GeneratorTrainJob:
    """Fit the Expression Generator on a corpus (clips.csv + clips; tracking cached in ``cache``): a model without
    the ``HELD_OUT`` speakers with the most face, for the card's figures, then the one written to ``out`` on every
    clip, with its sha256 and model card."""

    corpus: Path
    out: Path
    cache: Path
    clips: tuple[str, ...] = ()  # only these clips of clips.csv (file names; e.g. those whose terms allow your use)
    codebook: CodebookConfig = CodebookConfig()   # the codebook prior's
    name: str = "Train the expression generator"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> dict:
        frontend = Frontend(cancel=cancel)
        clips, failed = load_corpus(self.corpus, frontend, self.cache, span(progress, 0.0, 0.8), cancel, self.clips)
        face: dict[str, float] = {}
        for c in clips:
            face[c.row.speaker] = face.get(c.row.speaker, 0.0) + float(c.valid.sum()) / float(c.fps)
        if len(face) <= HELD_OUT:
            raise AvatarStudioError(f"{self.corpus}: the generator needs more than {HELD_OUT} speakers, found "
                                    f"{len(face)}")
        held = sorted(face, key=lambda s: (-face[s], s))[:HELD_OUT]
        train = [c for c in clips if c.row.speaker not in held]
        test = [c for c in clips if c.row.speaker in held]
        cancel.check(self.name)
        progress(Progress(0.8, "Fitting without the held-out speakers"))
        check = fit_generator(train)
        speakers = {}
        for s in held:
            own = [c for c in test if c.row.speaker == s]
            real = np.concatenate([blink_track(c) for c in own])
            subject = Subject.of(np.concatenate([c.blendshapes for c in own]), float(own[0].fps))
            made = np.concatenate([generate(check, subject, c.states, len(c.valid), c.fps, GeneratorConfig(seed=i))
                                   for i, c in enumerate(own)])
            speakers[s] = {"seconds": round(face[s], 1), "blinks_per_min_real": blink_stats(real, float(own[0].fps))[0],
                           "blinks_per_min_generated": blink_stats(made[:, 5:7].mean(1), float(own[0].fps))[0]}
        cancel.check(self.name)
        progress(Progress(0.85, "Fitting on every clip"))
        model = fit_generator(clips)
        prior = ExpressionVQ(self.codebook)
        prior_error = fit(prior, prior_tracks([(c.blendshapes, c.valid.astype(bool), float(c.fps)) for c in clips]),
                          prior.config.prior_steps, span(progress, 0.85, 0.99), cancel, "the corpus")
        codebook = self.out.with_name(CODEBOOK_FILE)
        save_codebook(codebook, prior)
        codebook_sha = file_sha256(codebook)
        atomic_write_bytes(codebook.with_name(codebook.name + ".sha256"), f"{codebook_sha}  {codebook.name}\n".encode())
        card = {
            "name": "Avatar Studio expression generator",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "frontend": "Whisper tiny.en encoder states (OpenAI, MIT licence) with log-mel, 50 Hz, pooled over 40 ms, "
                        "200 ms and 1 s",
            "outputs": list(EXPRESSION_BLENDSHAPES),
            "method": "blinks: gamma renewal process and the corpus's mean blink curve; brows: ridge from speech to "
                      "per-clip z-scores plus slow and fast AR(1) processes; scaled to the subject's footage",
            "corpus": str(self.corpus),
            "trained_on": [{"file": c.row.file, "speaker": c.row.speaker, "source": c.row.source,
                            "terms": c.row.terms} for c in clips],
            "left_out": failed,
            "blinks_per_min": model.blink_rate,
            "codebook": {"file": CODEBOOK_FILE, "sha256": codebook_sha, "config": to_dict(prior.config),
                         "training_error_z2": prior_error},
            "validation": {"held_out_speakers": held, "brow_r_training": brow_r(check, train),
                           "brow_r_held_out": brow_r(check, test), "speakers": speakers},
            "terms": sorted({c.row.terms for c in clips if c.row.terms}),
        }
        sha = save_generator(self.out, model, card)
        card["sha256"] = sha
        atomic_write_bytes(self.out.with_name(self.out.name + ".sha256"), f"{sha}  {self.out.name}\n".encode())
        atomic_write_bytes(self.out.with_name(self.out.stem + ".card.json"), (json.dumps(card, indent=2) + "\n").encode())
        progress(Progress(1.0, f"Expression generator: {len(clips)} clips, {len(face)} speakers"))
        return card
