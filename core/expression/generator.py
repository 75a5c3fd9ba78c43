"""SyncTalk++'s Expression Generator (III-E), for speech with no footage behind it: the upper face's seven core
blendshapes (brows and blinks) for any voice.

Speech does not decide when a person blinks, so blinks are sampled: a renewal process whose intervals follow a
gamma distribution fitted to the corpus's blinks (the rate a user control), each blink the corpus's mean blink
curve scaled to the subject's own blink height. The brows follow speech where it tells something (a ridge from the
speech front-end's states to the brows' per-clip z-scores, learnt speaker-disjointly on the corpus) plus an AR(1)
process carrying the variance speech does not explain, so a generated track moves like a person's and not like a
regression's flattened mean. A seed makes a generation repeatable; ``expressiveness`` scales the brows' motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from core.avatar.deform import EXPRESSION_BLENDSHAPES
from core.options import option
from core.tracking.landmarks import BLENDSHAPE_NAMES

BROWS = tuple(n for n in EXPRESSION_BLENDSHAPES if n.startswith("brow"))       # 5
BLINKS = ("eyeBlinkLeft", "eyeBlinkRight")
BROW_COLUMNS = [BLENDSHAPE_NAMES.index(n) for n in BROWS]
BLINK_COLUMNS = [BLENDSHAPE_NAMES.index(n) for n in BLINKS]
PROFILE_MS = np.arange(-300, 301, 20)   # the blink curve's support, ms around its peak
BASELINE_S = 1.0                        # the eyelids' resting level: a running median over this long
MIN_RISE = 0.2                          # a blink rises at least this far above the resting level
MIN_WIDTH_S = 0.05                      # and stays above half its rise this long: a one-frame flicker is noise
MIN_GAP_S = 0.15                        # two peaks closer than this are one blink


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = option(0, "the random draw: the same seed gives the same track", metavar="N")
    blink_rate: float | None = option(None, "blinks per minute (default: the corpus's rate)", metavar="N")
    expressiveness: float = option(1.0, "how far the brows move: 0 still, 1 as learnt, 2 twice", metavar="X")

    def __post_init__(self) -> None:
        if self.blink_rate is not None and not 0 <= self.blink_rate <= 120:
            raise ValueError(f"the blink rate is within 0..120 a minute, got {self.blink_rate}")
        if not 0 <= self.expressiveness <= 3:
            raise ValueError(f"expressiveness is within 0..3, got {self.expressiveness}")


@dataclass(frozen=True)
class Blink:
    start: int    # first frame above half the blink's rise
    peak: int
    end: int      # last frame above half its rise
    height: float  # the peak's rise above the resting level


def resting_level(blink: np.ndarray, fps: float) -> np.ndarray:
    """float [T]: the eyelids' resting level of a mean eyeBlink track [T] (a running median)."""
    half = max(1, int(round(BASELINE_S * fps / 2)))
    padded = np.pad(blink, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.median(windows, axis=1)[: len(blink)]


def detect_blinks(blink: np.ndarray, fps: float) -> list[Blink]:
    """The blinks of a mean eyeBlink track [T] (left and right averaged) at ``fps``: peaks that rise at least
    ``MIN_RISE`` above the resting level for at least ``MIN_WIDTH_S`` at half that rise, merged when closer than
    ``MIN_GAP_S``; each spans the frames above half its rise (full width at half height)."""
    rest = resting_level(blink, fps)
    rise = blink - rest
    above = rise >= MIN_RISE
    blinks: list[Blink] = []
    t = 0
    while t < len(blink):
        if not above[t]:
            t += 1
            continue
        end = t
        while end + 1 < len(blink) and (above[end + 1] or (end + 1 - t) < MIN_GAP_S * fps and
                                          rise[end + 1] >= MIN_RISE / 2):
            end += 1
        peak = t + int(np.argmax(rise[t:end + 1]))
        half = rise[peak] / 2
        a, b = peak, peak
        while a > 0 and rise[a - 1] >= half:
            a -= 1
        while b + 1 < len(blink) and rise[b + 1] >= half:
            b += 1
        if (blinks and peak - blinks[-1].peak < MIN_GAP_S * fps) or (b - a + 1) / fps < MIN_WIDTH_S:
            t = max(end, b) + 1
            continue
        blinks.append(Blink(a, peak, b, float(rise[peak])))
        t = max(end, b) + 1
    return blinks


def blink_stats(blink: np.ndarray, fps: float) -> tuple[float, float]:
    """(blinks per minute, median blink duration in ms at half height) of a mean eyeBlink track [T]."""
    found = detect_blinks(blink, fps)
    minutes = len(blink) / fps / 60
    durations = [(b.end - b.start + 1) / fps * 1000 for b in found]
    return len(found) / minutes if minutes else 0.0, float(np.median(durations)) if durations else float("nan")


@dataclass
class ExpressionModel:
    """What the generator learnt from the corpus (``core.expression.train_generator`` fits it)."""

    interval_shape: float        # gamma shape k of the intervals between blinks
    interval_scale: float        # gamma scale θ, s: the mean interval is k θ
    profile: np.ndarray          # float [len(PROFILE_MS)] the mean blink's rise over its peak, 0..1
    brow_weights: np.ndarray     # float [D*3+1, 5] ridge from pooled front-end states to the brows' z-scores
    brow_ar: float               # AR(1) coefficient per frame (at 25 fps) of what the ridge leaves
    brow_residual: float         # the residual's standard deviation, in z-scores
    frames_per_state: float = 2.0  # the front end's 50 Hz states per 25 fps frame

    @property
    def blink_rate(self) -> float:
        """Blinks per minute the model samples by default."""
        return 60.0 / (self.interval_shape * self.interval_scale)


@dataclass(frozen=True)
class Subject:
    """Whose face the generated track is for: the resting level and spread of their brows, the resting level and
    blink height of their eyelids (from their footage's tracking, or the corpus's medians)."""

    brow_mean: np.ndarray   # float [5]
    brow_std: np.ndarray    # float [5]
    eye_rest: float
    blink_height: float

    @classmethod
    def of(cls, blendshapes: np.ndarray, fps: float) -> Subject:
        """The subject of a tracked blendshape track [T,52]."""
        brows = blendshapes[:, BROW_COLUMNS]
        blink = blendshapes[:, BLINK_COLUMNS].mean(axis=1)
        found = detect_blinks(blink, fps)
        height = float(np.median([b.height for b in found])) if found else 0.5
        return cls(brows.mean(0), brows.std(0) + 1e-4, float(np.median(resting_level(blink, fps))), height)


def pooled(states: np.ndarray, frames: int, fps: Fraction | float) -> np.ndarray:
    """float32 [frames, 3D+1]: per video frame, the front-end states [N,D] (50 Hz) averaged over the frame's
    40 ms, 200 ms and 1 s around it, and a bias column: prosody moves the brows over syllables and phrases."""
    n = len(states)
    centre = (np.arange(frames) + 0.5) / float(fps) * 50.0                             # [F] state index
    cum = np.concatenate([np.zeros((1, states.shape[1])), np.cumsum(states, axis=0)])  # [N+1,D]
    parts = []
    for half in (1, 5, 25):
        a = np.clip(np.floor(centre - half).astype(int), 0, n)
        b = np.clip(np.ceil(centre + half).astype(int), 0, n)
        width = np.maximum(b - a, 1)[:, None]
        parts.append((cum[b] - cum[a]) / width)
    return np.concatenate(parts + [np.ones((frames, 1))], axis=1).astype(np.float32)


def generate(model: ExpressionModel, subject: Subject, states: np.ndarray, frames: int, fps: Fraction | float,
             config: GeneratorConfig = GeneratorConfig()) -> np.ndarray:
    """float32 [frames, 7] the EXPRESSION_BLENDSHAPES track for speech whose front-end states are ``states``
    [N,D] (50 Hz), at ``fps``, for ``subject``."""
    rng = np.random.default_rng(config.seed)
    fps = float(fps)
    out = np.zeros((frames, len(EXPRESSION_BLENDSHAPES)), np.float32)

    z = pooled(states, frames, fps) @ model.brow_weights                            # [F,5] speech's part
    a = model.brow_ar ** (25.0 / fps)                                               # the AR(1) at this rate
    noise = np.zeros((frames, len(BROWS)))
    step = rng.normal(size=(frames, len(BROWS))) * model.brow_residual * np.sqrt(1 - a * a)
    noise[0] = rng.normal(size=len(BROWS)) * model.brow_residual
    for t in range(1, frames):
        noise[t] = a * noise[t - 1] + step[t]
    brows = subject.brow_mean + config.expressiveness * subject.brow_std * (z + noise)
    for j, name in enumerate(BROWS):
        out[:, EXPRESSION_BLENDSHAPES.index(name)] = np.clip(brows[:, j], 0.0, 1.0)

    rate = model.blink_rate if config.blink_rate is None else config.blink_rate
    eyes = np.full(frames, subject.eye_rest)
    if rate > 0:
        scale = 60.0 / rate / model.interval_shape                                 # keeps k, sets the mean
        t_ms = (np.arange(frames) / fps) * 1000
        at = rng.uniform(0, 1) * model.interval_shape * scale                      # the first blink
        while at < frames / fps:
            eyes += subject.blink_height * np.interp(t_ms - at * 1000, PROFILE_MS, model.profile, left=0, right=0)
            at += max(MIN_GAP_S * 2, rng.gamma(model.interval_shape, scale))
    for name in BLINKS:
        out[:, EXPRESSION_BLENDSHAPES.index(name)] = np.clip(eyes, 0.0, 1.0)
    return out
