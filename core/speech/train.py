"""Training the speech model on the corpus, speaker-disjoint, as a job that writes the weights and the model card.

1. Speaker-disjoint k-fold cross-validation on every clip that tracks; from its out-of-fold estimates, each clip's
   audio-to-mouth offset to a fraction of a frame. Corpus clips carry offsets of their own (sound muxed a frame or
   two off its picture): each clip's targets are moved by its offset, so that every clip teaches the same timing.
   Clips whose offset lies past ``max_offset`` frames, or whose mouth barely follows its sound even there (r under
   ``min_r``), are left out.
2. The same cross-validation on the clips kept, aligned: the figures of the model card (per held-out speaker, the
   r of the lip opening at lag 0 and at the best lag within ±3 frames; the median over speakers).
3. The model trained on every kept clip, written with its card (clips, terms, offsets, figures, config, sha256).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.config import to_dict
from core.errors import AvatarStudioError
from core.fsutil import atomic_write_bytes
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.metrics import best_lag_r, fractional_lag
from core.speech.corpus import Clip, load_corpus
from core.speech.frontend import Frontend
from core.speech.model import SpeechModelConfig, SpeechToFace, at_frames, between, frame_positions, save_model
from core.speech.targets import normalise

@dataclass(frozen=True)
class SpeechTrainConfig:
    model: SpeechModelConfig = SpeechModelConfig()
    ridge: float = 3e4          # ridge weight on the standardised states
    folds: int = 5              # speaker-disjoint folds
    max_offset: float = 3.5     # frames: a clip whose audio-to-mouth offset lies further out is left out
    min_r: float = 0.3          # a clip whose lip opening follows its estimate less at its offset is left out
    min_face: float = 0.8       # share of frames with a tracked face that a clip needs


@dataclass
class Prepared:
    """A clip as training reads it."""

    clip: Clip
    z: np.ndarray           # float32 [T,K] targets, z-scores over the clip's face frames
    valid: np.ndarray       # bool [T]

    @property
    def speaker(self) -> str:
        return self.clip.row.speaker

    def aligned(self, offset: float) -> Prepared:
        """The clip with its targets moved to its sound: the target at frame t is the mouth at frame t - offset
        (``offset`` frames, fractional, positive when the sound comes late; linear interpolation). Frames whose
        mouth lies outside the clip or next to an untracked frame become invalid."""
        n = len(self.z)
        src = np.arange(n) - offset                                                       # [T] frames, fractional
        lo, hi, w = between(np.clip(src, 0, n - 1), n)
        z = (1 - w[:, None]) * self.z[lo] + w[:, None] * self.z[hi]                       # [T,K]
        inside = (src >= 0) & (src < n - 1)
        return Prepared(self.clip, z.astype(np.float32), inside & self.valid[lo] & self.valid[hi])


@dataclass
class TrainResult:
    net: SpeechToFace
    card: dict = field(default_factory=dict)


def prepare(clips: list[Clip]) -> list[Prepared]:
    """Each clip's targets as z-scores; outputs that barely move in a clip are floored at a quarter of their typical
    spread so that its noise is not read as movement."""
    spreads = np.median([c.raw[c.valid].std(0) for c in clips], axis=0)                # [K]
    out = []
    for c in clips:
        z, _, _ = normalise(c.raw, c.valid)
        std = c.raw[c.valid].std(0)
        z = z * (std / np.maximum(std, 0.25 * spreads))                                   # floor the scale
        out.append(Prepared(c, z.astype(np.float32), c.valid.copy()))
    return out


def speaker_folds(clips: list[Prepared], k: int) -> list[set[str]]:
    """k sets of speakers of about equal frames (largest first, each to the lightest fold): never a speaker in two."""
    frames: dict[str, int] = {}
    for c in clips:
        frames[c.speaker] = frames.get(c.speaker, 0) + len(c.z)
    folds: list[set[str]] = [set() for _ in range(min(k, len(frames)))]
    load = [0] * len(folds)
    for speaker in sorted(frames, key=lambda s: (-frames[s], s)):
        i = int(np.argmin(load))
        folds[i].add(speaker)
        load[i] += frames[speaker]
    return folds


def fit(clips: list[Prepared], cfg: SpeechTrainConfig, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None) -> SpeechToFace:
    """A model fitted to ``clips``, compared with each video frame at the frame's own time."""
    if not clips:
        raise AvatarStudioError("no corpus clips to train the speech model on")
    net = SpeechToFace(cfg.model)
    states = np.concatenate([c.clip.states for c in clips])
    net.mean.copy_(torch.from_numpy(states.mean(0)))
    net.std.copy_(torch.from_numpy(states.std(0) + 1e-3))
    raw = [c.clip.raw[c.valid] for c in clips]
    net.level.copy_(torch.from_numpy(np.median([r.mean(0) for r in raw], axis=0)))
    net.spread.copy_(torch.from_numpy(np.median([r.std(0) for r in raw], axis=0)))
    _fit_linear(net, clips, cfg.ridge, cancel)
    net.eval()
    spread = np.concatenate([predict_frames(net, c.clip)[c.valid] for c in clips]).std(0)
    net.gain.copy_(torch.from_numpy(np.maximum(spread, 1e-3).astype(np.float32)))
    if progress:
        progress(Progress(1.0, "Speech model fitted"))
    return net.eval()


def _frame_positions(c: Prepared, n_states: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the clip's valid frames within its states: (frame indices, left state, right state, weight of right)."""
    pos = frame_positions(len(c.z), c.clip.fps)                                           # [T] in states
    frames = np.flatnonzero(c.valid & (pos <= n_states - 1))
    return (frames, *between(pos[frames], n_states))


def _fit_linear(net: SpeechToFace, clips: list[Prepared], ridge: float, cancel: CancelToken | None) -> None:
    """The linear temporal convolution as a ridge regression from the taps around each frame to its targets."""
    m = net.config
    offsets = (np.arange(m.kernel) - m.past) * m.dilation                                  # [k] states
    mean, std = net.mean.numpy(), net.std.numpy()
    d, k = m.kernel * len(mean), len(m.outputs)
    gram, cross = np.zeros((d, d)), np.zeros((d, k))
    sum_a, sum_y, n = np.zeros(d), np.zeros(k), 0
    for c in clips:
        if cancel is not None:
            cancel.check("Speech model training")
        x = (c.clip.states - mean) / std                                                   # [N,D]
        frames, left, right, w = _frame_positions(c, len(x))

        def taps(j: np.ndarray) -> np.ndarray:
            return x[np.clip(j[:, None] + offsets, 0, len(x) - 1)].reshape(len(j), d)     # [F,k*D]

        a = ((1 - w)[:, None] * taps(left) + w[:, None] * taps(right)).astype(np.float64)  # [F,d]
        y = c.z[frames].astype(np.float64)                                                 # [F,K]
        gram += a.T @ a
        cross += a.T @ y
        sum_a += a.sum(0)
        sum_y += y.sum(0)
        n += len(a)
    mean_a, mean_y = sum_a / n, sum_y / n
    gram -= n * np.outer(mean_a, mean_a)
    cross -= n * np.outer(mean_a, mean_y)
    weights = np.linalg.solve(gram + ridge * np.eye(d), cross)                             # [d,K]
    with torch.no_grad():
        net.linear.weight.copy_(torch.from_numpy(weights.reshape(m.kernel, -1, k).transpose(2, 1, 0).copy()))
        net.linear.bias.copy_(torch.from_numpy(mean_y - mean_a @ weights))


def predict_frames(net: SpeechToFace, clip: Clip) -> np.ndarray:
    """float32 [T,K] z-scores at the clip's video frames."""
    return at_frames(net.predict(clip.states), len(clip.raw), clip.fps)


def cross_validate(clips: list[Prepared], cfg: SpeechTrainConfig, progress: ProgressFn,
                   cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """Out-of-fold estimates {clip file: [T,K]}, each from a model that never heard its speaker."""
    folds = speaker_folds(clips, cfg.folds)
    out: dict[str, np.ndarray] = {}
    for f, held in enumerate(folds):
        rest = [c for c in clips if c.speaker not in held]
        net = fit(rest, cfg, span(progress, f / len(folds), (f + 1) / len(folds)), cancel)
        for c in clips:
            if c.speaker in held:
                out[c.clip.row.file] = predict_frames(net, c.clip)
    return out


def speaker_scores(clips: list[Prepared], estimates: dict[str, np.ndarray], output: int = 0,
                   max_lag: int = 3) -> dict[str, dict[str, float]]:
    """Per speaker: the r of one output (default the lip opening) over their clips' face frames, at lag 0 and at
    the best lag within ±max_lag (positive: the estimate comes late)."""
    by: dict[str, list[Prepared]] = {}
    for c in clips:
        by.setdefault(c.speaker, []).append(c)
    scores = {}
    for speaker, group in by.items():
        pairs = [(estimates[c.clip.row.file][:, output], c.z[:, output], c.valid) for c in group]
        r0, _ = best_lag_r(pairs, 0)
        r, lag = best_lag_r(pairs, max_lag)
        scores[speaker] = {"r": r0, "r_best": r, "lag": lag}
    return scores


def clip_offsets(clips: list[Prepared], estimates: dict[str, np.ndarray],
                 max_lag: int = 6) -> dict[str, tuple[float, float]]:
    """Per clip: (audio-to-mouth offset in frames within ±max_lag, fractional; r at the nearest whole frame) of the
    estimated against the tracked lip opening."""
    return {c.clip.row.file: fractional_lag(estimates[c.clip.row.file][:, 0], c.z[:, 0], c.valid, max_lag)
            for c in clips}


@dataclass
class SpeechModelTrainJob:
    """Train the speech model on a corpus folder (clips.csv + clips) and write it with its model card."""

    corpus: Path
    out: Path
    cache: Path
    config: SpeechTrainConfig = SpeechTrainConfig()
    clips: tuple[str, ...] = ()               # only these clips of clips.csv (file names); () for all
    name: str = "Speech model"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> TrainResult:
        cfg = self.config
        frontend = Frontend(cfg.model.frontend, cancel=cancel)
        clips, failed = load_corpus(self.corpus, frontend, self.cache, span(progress, 0.0, 0.3), cancel, self.clips)
        dropped = dict(failed)
        usable = []
        for c in clips:
            share = float(c.valid.mean())
            if share < cfg.min_face:
                dropped[c.row.file] = f"a face in only {share:.0%} of frames"
            else:
                usable.append(c)
        prepared = prepare(usable)
        if len({c.speaker for c in prepared}) < 2:
            raise AvatarStudioError(f"{self.corpus}: the speech model needs clips of at least two speakers that track "
                                    f"(usable: {len(prepared)} clip(s))")
        first = cross_validate(prepared, cfg, span(progress, 0.3, 0.55), cancel)
        offsets = clip_offsets(prepared, first)
        kept = []
        for c in prepared:
            offset, r = offsets[c.clip.row.file]
            if abs(offset) > cfg.max_offset:
                dropped[c.clip.row.file] = f"out of sync: its sound is {offset:+.1f} frames off its picture (r {r:.2f})"
            elif r < cfg.min_r:
                dropped[c.clip.row.file] = f"its mouth barely follows its sound (r {r:.2f})"
            else:
                kept.append(c.aligned(offset))
        if len({c.speaker for c in kept}) < 2:
            raise AvatarStudioError(f"{self.corpus}: after leaving out the clips out of sync, fewer than two speakers "
                                    f"remain: {'; '.join(f'{k}: {v}' for k, v in dropped.items())}")
        second = cross_validate(kept, cfg, span(progress, 0.55, 0.85), cancel)
        scores = speaker_scores(kept, second)
        per_output = {name: float(np.median(list(v["r"] for v in speaker_scores(kept, second, k).values())))
                      for k, name in enumerate(cfg.model.outputs)}
        net = fit(kept, cfg, span(progress, 0.85, 0.99), cancel)
        card = {
            "name": "Avatar Studio speech-to-face model",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "frontend": ("Whisper tiny.en encoder states (OpenAI, MIT licence), layers "
                         f"{list(cfg.model.frontend.layers)} (core.speech.encoder's numbers), fixed blocks, 50 Hz"),
            "outputs": list(cfg.model.outputs),
            "output_space": "per-clip z-scores of each output over the clip's face frames",
            "lookahead_ms": round(cfg.model.lookahead_s * 1000),
            "config": to_dict(cfg),
            "corpus": str(self.corpus),
            "trained_on": [_clip_entry(c.clip, offsets[c.clip.row.file][0]) for c in kept],
            "left_out": dropped,
            "validation": {
                "method": f"{len(speaker_folds(kept, cfg.folds))}-fold cross-validation by speaker",
                "timing": "each clip's targets moved by its own audio-to-mouth offset (trained_on[].offset_frames), "
                          "found out of fold",
                "median_speaker_r": float(np.median([v["r"] for v in scores.values()])),
                "median_speaker_r_best_lag": float(np.median([v["r_best"] for v in scores.values()])),
                "median_lag": float(np.median([v["lag"] for v in scores.values()])),
                "speakers": scores,
                "median_speaker_r_per_output": per_output,
            },
            "terms": sorted({c.clip.row.terms for c in kept if c.clip.row.terms}),
        }
        sha = save_model(self.out, net, card)
        card["sha256"] = sha
        atomic_write_bytes(self.out.with_name(self.out.name + ".sha256"), f"{sha}  {self.out.name}\n".encode())
        atomic_write_bytes(self.out.with_suffix(".card.json"), (json.dumps(card, indent=2) + "\n").encode())
        progress(Progress(1.0, f"Speech model: {len(kept)} clips, {len(scores)} speakers, held-out median r "
                               f"{card['validation']['median_speaker_r']:.3f}"))
        return TrainResult(net, card)


def _clip_entry(clip: Clip, offset: float) -> dict:
    row = clip.row
    return {"file": row.file, "speaker": row.speaker, "tier": row.tier, "language": row.language,
            "frames": len(clip.raw), "fps": str(clip.fps), "offset_frames": round(offset, 2),
            "offset_ms": round(1000 * offset / float(clip.fps)), "source": row.source, "terms": row.terms}
