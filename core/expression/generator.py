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

import json
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np

from core.errors import AvatarStudioError
from core.expression.codebook import in_range, learn_subject, shipped_prior
from core.fsutil import load_npz, save_npz
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AUDIO_FILE
from core.media import AUDIO_RATE, load_audio
from core.options import option
from core.project import Project, file_sha256
from core.speech.frontend import Frontend
from core.tracking.landmarks import BLENDSHAPE_NAMES, EXPRESSION_BLENDSHAPES, EXPRESSION_COLUMNS

BROWS = tuple(n for n in EXPRESSION_BLENDSHAPES if n.startswith("brow"))       # 5
BLINKS = ("eyeBlinkLeft", "eyeBlinkRight")
BROW_COLUMNS = [BLENDSHAPE_NAMES.index(n) for n in BROWS]
BLINK_COLUMNS = [BLENDSHAPE_NAMES.index(n) for n in BLINKS]
PROFILE_MS = np.arange(-300, 301, 20)   # the blink curve's support, ms around its peak
BASELINE_S = 1.0                        # the eyelids' resting level: a running median over this long
MIN_RISE = 0.2                          # a blink rises at least this far above the resting level
MIN_WIDTH_S = 0.05                      # and stays above half its rise this long: a one-frame flicker is noise
MIN_GAP_S = 0.15                        # two peaks closer than this are one blink
SLOW_S = 0.36                           # a track's slow motion is its moving average over this long


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


def slow_and_fast(track: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(slow, fast) parts of a track [T,K]: its moving average over ``SLOW_S`` and what is left (jitter)."""
    n = max(1, int(round(SLOW_S * fps)))
    kernel = np.ones(n) / n
    pad = np.pad(track, ((n // 2, n - 1 - n // 2), (0, 0)), mode="edge")
    slow = np.stack([np.convolve(pad[:, k], kernel, mode="valid") for k in range(track.shape[1])], axis=1)
    return slow, track - slow


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


def ar1(rng: np.random.Generator, frames: int, k: int, a: float) -> np.ndarray:
    """float [frames, k]: a unit-variance AR(1) process with per-frame coefficient ``a``."""
    x = np.empty((frames, k))
    steps = rng.normal(size=(frames, k)) * np.sqrt(1 - a * a)
    x[0] = rng.normal(size=k)
    for t in range(1, frames):
        x[t] = a * x[t - 1] + steps[t]
    return x


@dataclass(frozen=True)
class BrowProcess:
    """What speech leaves of the brows (z-scores over a clip): a slow AR(1) (their motion) plus a fast one (the
    frame-to-frame jitter a tracked face shows too), each its standard deviation and per-frame coefficient at
    25 fps."""

    slow_std: float
    slow_ar: float
    fast_std: float
    fast_ar: float


@dataclass
class ExpressionModel:
    """What the generator learnt from the corpus (``core.expression.train_generator`` fits it)."""

    interval_shape: float        # gamma shape k of the intervals between blinks
    interval_scale: float        # gamma scale θ, s: the mean interval is k θ
    profile: np.ndarray          # float [len(PROFILE_MS)] the mean blink's rise over its peak, 0..1
    brow_weights: np.ndarray     # float [D*3+1, 5] ridge from pooled front-end states to the brows' z-scores
    brows: BrowProcess           # what the ridge leaves

    @property
    def blink_rate(self) -> float:
        """Blinks per minute the model samples by default."""
        return 60.0 / (self.interval_shape * self.interval_scale)


@dataclass(frozen=True)
class Subject:
    """Whose face the generated track is for, from their footage's tracking: their brows' resting level, slow
    motion and jitter, their eyelids' resting level, jitter and blink height (a tracker is steadier on a sharp
    face than on a small blurred one: the jitter is the subject's footage's, not the corpus's)."""

    brow_mean: np.ndarray   # float [5]
    brow_slow: np.ndarray   # float [5,5] covariance of the slow motion: the brows move together
    brow_fast: np.ndarray   # float [5] standard deviation of the jitter
    eye_rest: float
    eye_jitter: float
    blink_height: float

    @classmethod
    def of(cls, blendshapes: np.ndarray, fps: float) -> Subject:
        """The subject of a tracked blendshape track [T,52] at ``fps``."""
        brows = blendshapes[:, BROW_COLUMNS].astype(np.float64)
        slow, fast = slow_and_fast(brows, fps)
        blink = blendshapes[:, BLINK_COLUMNS].mean(axis=1).astype(np.float64)
        found = detect_blinks(blink, fps)
        resting = np.ones(len(blink), bool)
        for b in found:
            resting[max(0, b.start - 2):b.end + 3] = False
        _, eye_fast = slow_and_fast(blink[resting][:, None], fps)
        height = float(np.median([b.height for b in found])) if found else 0.5
        return cls(brows.mean(0), np.cov(slow, rowvar=False) + 1e-8 * np.eye(len(BROWS)), fast.std(0),
                   float(np.median(resting_level(blink, fps))),
                   float(eye_fast.std()) if resting.sum() > 2 else 0.0, height)


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

    k, p = len(BROWS), model.brows
    z = pooled(states, frames, fps) @ model.brow_weights                            # [F,5] speech's part, z
    slow = (z + p.slow_std * ar1(rng, frames, k, p.slow_ar ** (25.0 / fps))) / np.hypot(p.slow_std, z.std() or 0.0)
    fast = ar1(rng, frames, k, p.fast_ar ** (25.0 / fps))                           # [F,5] unit variance each
    mix = np.linalg.cholesky(subject.brow_slow)                                     # [5,5]
    brows = subject.brow_mean + config.expressiveness * (slow @ mix.T + subject.brow_fast * fast)
    for j, name in enumerate(BROWS):
        out[:, EXPRESSION_BLENDSHAPES.index(name)] = np.clip(brows[:, j], 0.0, 1.0)

    rate = model.blink_rate if config.blink_rate is None else config.blink_rate
    eyes = subject.eye_rest + subject.eye_jitter * ar1(rng, frames, 1, p.fast_ar ** (25.0 / fps))[:, 0]
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


def for_speech(speech: np.ndarray, tracking: dict[str, np.ndarray], frames: int, fps: Fraction,
               config: GeneratorConfig = GeneratorConfig(), cancel: CancelToken | None = None) -> np.ndarray:
    """float32 [frames, 7]: the upper face the shipped generator makes for ``speech`` (16 kHz), for the face of
    ``tracking`` (its resting brows, their motion and its blinks)."""
    model, _ = shipped_generator()
    states = Frontend(cancel=cancel).states(speech, cancel=cancel)                       # [N,D] 50 Hz
    subject = Subject.of(tracking["blendshapes"][tracking["valid"].astype(bool)], float(fps))
    return generate(model, subject, states, frames, fps, config)


def subject_range(track: np.ndarray, tracking: dict[str, np.ndarray], cancel: CancelToken | None = None
                  ) -> np.ndarray:
    """float32 [T,7]: a core-blendshape track rebuilt from the expression codebook of the face of ``tracking``
    (the shipped prior fitted to its tracked frames)."""
    valid = tracking["valid"].astype(bool)
    own = tracking["blendshapes"][valid][:, EXPRESSION_COLUMNS]
    return in_range(learn_subject(shipped_prior(), own, cancel=cancel), track)


@dataclass
class GenerateJob:
    """The upper face generated for the project's own speech, over all its footage's frames (the studio fills a
    range of the edited track with it), rebuilt from the subject's expression codebook when ``keep_in_range``."""

    project: Project
    tracking: dict[str, np.ndarray]
    config: GeneratorConfig = GeneratorConfig()
    keep_in_range: bool = True
    name: str = "Generate brows and blinks"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> np.ndarray:
        progress(Progress(0.0, "Reading the speech"))
        fps = Fraction(self.project.checked_footage().info["fps"])
        frames = len(self.tracking["blendshapes"])
        speech = load_audio(self.project.path(AUDIO_FILE), AUDIO_RATE)
        out = for_speech(speech, self.tracking, frames, fps, self.config, cancel)
        if self.keep_in_range:
            progress(Progress(0.8, "Keeping the expressions in the subject's range"))
            out = subject_range(out, self.tracking, cancel)
        progress(Progress(1.0, f"Generated {frames} frames of brows and blinks"))
        return out


SHIPPED_FILE = "expression_generator.npz"  # in resources/models/, with SHIPPED_FILE + ".sha256" and its card
FORMAT = "avatar-studio expression generator 1"


def save_generator(path: Path, model: ExpressionModel, card: dict) -> str:
    """Write the model and its card (arrays and a JSON string: no pickles) atomically; returns its sha256."""
    p = model.brows
    save_npz(path, {"format": np.array(FORMAT), "card": np.array(json.dumps(card)),
                    "interval": np.array([model.interval_shape, model.interval_scale]), "profile": model.profile,
                    "brow_weights": model.brow_weights,
                    "brows": np.array([p.slow_std, p.slow_ar, p.fast_std, p.fast_ar])})
    return file_sha256(path)


def load_generator(path: Path, sha256: str | None = None) -> tuple[ExpressionModel, dict]:
    """(model, card) of the file at ``path``; with ``sha256``, refused unless the file has that hash."""
    path = Path(path)
    retrain = "retrain it with 'avatar-studio-cli expression-model train' or reinstall the studio"
    if not path.is_file():
        raise AvatarStudioError(f"{path}: no expression generator there: {retrain}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise AvatarStudioError(f"{path}: the expression generator's file does not match its recorded sha256 "
                                f"(damaged or replaced): {retrain}")
    data = load_npz(path)
    try:
        if data is None or str(data["format"]) != FORMAT:
            raise ValueError("not an expression generator file")
        shape, scale = (float(v) for v in data["interval"])
        model = ExpressionModel(shape, scale, data["profile"], data["brow_weights"],
                                BrowProcess(*(float(v) for v in data["brows"])))
        return model, json.loads(str(data["card"]))
    except (KeyError, TypeError, ValueError) as e:
        raise AvatarStudioError(f"{path}: not a readable expression generator ({e}): {retrain}") from e


def shipped_generator() -> tuple[ExpressionModel, dict]:
    """The generator shipped in resources/models, checked against its recorded sha256."""
    root = Path(str(resources.files("resources") / "models"))
    digest = root / (SHIPPED_FILE + ".sha256")
    if not digest.is_file():
        raise AvatarStudioError(f"{digest}: the shipped expression generator's hash is missing: reinstall the studio")
    return load_generator(root / SHIPPED_FILE, digest.read_text().split()[0])
