"""Per-subject training of the audio-visual encoder (SyncTalk++ Eq. 1-3) from the footage's own audio and mouth.

Each step draws a batch of training frames. The audio encoder sees the mel windows of 5 frames around each;
the centre one meets the visual encoder's 5-frame lower-face crops, either of the same frame (in sync, y=1)
or of a frame 2-8 frames away or anywhere in the clip (out of sync, y=0): binary cross-entropy on the
cosine similarity (Eq. 1-2). The mouth head predicts the centre frame's mouth opening and lip shape from the
5 audio features (Eq. 3). Audio is drawn up to half a frame off the video frame, with masked mel bands and
gain changes, so 10 seconds of footage go further.

The last ``holdout`` of the frames is never trained on: it measures how well the encoder generalises (mouth:
a linear readout of the features, :func:`mouth_probe`; sync: the offset the discriminator finds).
Randomness is seeded per step, so a run resumed from a checkpoint continues exactly as it would have.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.audio.ave import SYNC_FRAMES, AudioEncoder, MouthHead, VisualEncoder, sync_probability
from core.audio.mel import MelConfig, frame_mel_index, log_mel, windows_at
from core.audio.mouth import mouth_opening
from core.config import config_hash, to_dict
from core.fsutil import Unreadable, atomic_path, load_torch, set_aside
from core.jobs import CancelToken, Progress, ProgressFn
from core.metrics import pearson
from core.options import option
from core.split import feature_blocks, training_frames

CONTEXT = np.arange(SYNC_FRAMES) - SYNC_FRAMES // 2   # frame offsets around the centre: -2..2
MARGIN = 32                                            # frames of mel kept beyond each end of the clip
MAX_OFFSET = 15                                        # sync search range, frames


@dataclass(frozen=True)
class AveTrainConfig:
    steps: int = option(400, "AVE training steps (the ave encoders)", metavar="N")
    batch: int = 32
    width: int = 8             # channel width of both encoders (SyncTalk's audio encoder: 32)
    lr: float = 1e-3
    weight_decay: float = 0.1
    eval_every: int = 50
    checkpoint_every: int = 50
    holdout: float = 0.2       # the last fraction of frames, never trained on
    seed: int = 0


@dataclass
class AveData:
    """What training reads, built once per project (core.audio.features)."""

    mel: torch.Tensor          # float32 [80, M]: mel frames -MARGIN*rate/fps .. beyond the last frame
    mel_first: int             # mel frame index of mel[:, 0]
    fps: Fraction
    crops: torch.Tensor        # uint8 [T,3,48,96] lower-face crops
    targets: np.ndarray        # float32 [T,81] mouth opening, lip shape
    mel_config: MelConfig

    @property
    def n_frames(self) -> int:
        return len(self.targets)

    @classmethod
    def build(cls, audio: np.ndarray, fps: Fraction, crops: np.ndarray, targets: np.ndarray,
              mel_config: MelConfig) -> "AveData":
        t = len(targets)
        first = int(frame_mel_index(-MARGIN, fps, mel_config)) + mel_config.window_start
        last = int(frame_mel_index(t + MARGIN, fps, mel_config)) + mel_config.window_start + mel_config.window_frames
        mel = log_mel(audio, mel_config, first, last - first + 2)
        return cls(mel, first, Fraction(fps), torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(),
                   targets.astype(np.float32), mel_config)

    def key(self) -> str:
        """Identifies the data, so a checkpoint made on other data is not resumed."""
        return f"{self.n_frames}:{self.mel.shape[1]}:{float(self.mel.sum()):.6e}:{float(self.targets.sum()):.6e}"

    def windows(self, frame_time: np.ndarray) -> torch.Tensor:
        """[N,1,80,16] mel windows at fractional frame positions ``frame_time`` [N] (frames, not seconds)."""
        cfg = self.mel_config
        mel_pos = np.floor(np.asarray(frame_time, np.float64) * float(cfg.rate / self.fps) + 1e-9).astype(np.int64)
        starts = np.clip(mel_pos + cfg.window_start - self.mel_first, 0, self.mel.shape[1] - cfg.window_frames)
        return windows_at(self.mel, starts, cfg)

    def visual(self, centre: np.ndarray) -> torch.Tensor:
        """[N,15,48,96] float crops of the 5 frames around each centre frame, edges repeated."""
        idx = np.clip(np.asarray(centre)[:, None] + CONTEXT, 0, self.n_frames - 1)   # [N,5]
        crops = self.crops[torch.from_numpy(idx)].float() / 255.0                    # [N,5,3,48,96]
        return crops.flatten(1, 2)


class AveTrainer:
    """Models, optimiser and schedule of one training run; ``state_dict`` is everything a resume needs."""

    def __init__(self, data: AveData, cfg: AveTrainConfig):
        self.data, self.cfg = data, cfg
        self.n_train = training_frames(data.n_frames, cfg.holdout)
        stats = data.targets[: self.n_train]
        self.mean, self.std = stats.mean(0), stats.std(0) + 1e-6
        torch.manual_seed(cfg.seed)
        self.audio = AudioEncoder(cfg.width)
        self.visual = VisualEncoder(cfg.width)
        self.head = MouthHead(data.targets.shape[1])
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, cfg.lr, total_steps=max(cfg.steps, 2))
        self.step = 0
        self.history: list[dict[str, float]] = []  # every step's metrics (with the held-out scores where scored)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.audio.parameters(), *self.visual.parameters(), *self.head.parameters()]

    def _train_mode(self, on: bool) -> None:
        for m in (self.audio, self.visual, self.head):
            m.train(on)

    def _augment(self, mel: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Mask a random band of up to 10 mel bins and shift the gain by up to ±0.4 (±5 dB), per window."""
        n, bins = mel.shape[0], mel.shape[2]
        lo = torch.from_numpy(rng.integers(0, bins - 10, n))
        width = torch.from_numpy(rng.integers(0, 11, n))
        band = torch.arange(bins)[None]
        masked = (band >= lo[:, None]) & (band < (lo + width)[:, None])               # [N,80]
        gain = torch.from_numpy(rng.uniform(-0.4, 0.4, n).astype(np.float32))
        mel = torch.where(masked[:, None, :, None], torch.tensor(-4.0), mel)
        return (mel + gain[:, None, None, None]).clamp(-4.0, 4.0)

    def train_step(self) -> dict[str, float]:
        cfg, data = self.cfg, self.data
        rng = np.random.default_rng([cfg.seed, self.step])
        torch.manual_seed(cfg.seed * 1_000_003 + self.step)  # dropout
        self._train_mode(True)
        b = cfg.batch
        centre = rng.integers(2, self.n_train - 2, b)                                    # [B]
        jitter = rng.uniform(-0.5, 0.5, b)                                               # frames
        times = (centre + jitter)[:, None] + CONTEXT                                     # [B,5]
        mel = self._augment(data.windows(times.reshape(-1)), rng)                        # [B*5,1,80,16]
        feats = self.audio(mel).view(b, SYNC_FRAMES, -1)                                 # [B,5,512]

        # Sync (Eq. 1-2): half the pairs in sync, the others 2-8 frames off or anywhere in the training part.
        in_sync = rng.random(b) < 0.5
        near = rng.integers(2, 9, b) * rng.choice([-1, 1], b)
        far = rng.integers(0, self.n_train, b) - centre
        shift = np.where(rng.random(b) < 0.5, near, far)
        shift = np.where(np.abs(shift) < 2, 6, shift)
        video = np.clip(centre + np.where(in_sync, 0, shift), 0, self.n_train - 1)
        label = torch.from_numpy((video == centre).astype(np.float32))
        p_sync = sync_probability(feats[:, SYNC_FRAMES // 2], self.visual(data.visual(video)))
        sync_loss = F.binary_cross_entropy(p_sync, label)

        # Reconstruction (Eq. 3): the mouth at the (fractional) centre time, standardised.
        pos = centre + jitter
        lo = np.floor(pos).astype(np.int64)
        w = torch.from_numpy((pos - lo).astype(np.float32))[:, None]
        target = data.targets[lo] * (1 - w.numpy()) + data.targets[np.minimum(lo + 1, data.n_frames - 1)] * w.numpy()
        target = torch.from_numpy((target - self.mean) / self.std)
        pred = self.head(feats)
        mouth_loss = F.mse_loss(pred, target) + F.mse_loss(pred[:, 0], target[:, 0])  # the opening counts twice

        loss = sync_loss + mouth_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.step + 1 < self.schedule.total_steps:
            self.schedule.step()
        self.step += 1
        return {"step": float(self.step), "loss": loss.item(), "sync_loss": sync_loss.item(),
                "mouth_loss": mouth_loss.item()}

    @torch.no_grad()
    def evaluate(self, data: AveData | None = None) -> dict[str, float]:
        """Held-out scores: mouth-opening Pearson r, the sync offset found (frames the audio lags the
        video) and the sync score's margin (aligned minus >= 3 frames off). ``data``: the same footage with
        other audio, e.g. shifted, instead of the training data."""
        self._train_mode(False)
        data = data or self.data
        t = data.n_frames
        frames = np.arange(-MAX_OFFSET - 2, t + MAX_OFFSET + 2)
        audio = self.audio(data.windows(frames.astype(np.float64)))                     # [F,512]
        held = np.arange(self.n_train, t)
        report = {"mouth_r": float("nan"), "offset_frames": float("nan"), "sync_score": float("nan")}
        if len(held) >= 3:
            context = audio[np.arange(t)[:, None] + CONTEXT - frames[0]].flatten(1).numpy()   # [T,5*512]
            report["mouth_r"] = held_out_r(context, data.targets[:, 0], self.n_train)
        centres = np.arange(max(self.n_train, 2), t - 2)
        if len(centres) >= 3:
            offsets, scores = sync_scores(self.visual(data.visual(centres)),
                                          lambda k: audio[centres + k - frames[0]])
            report["offset_frames"] = float(offsets[int(np.argmax(scores))])
            far = np.abs(offsets) >= 3
            report["sync_score"] = float(scores[offsets == 0][0] - scores[far].mean())
        return report

    def state_dict(self) -> dict:
        return {"step": self.step, "audio": self.audio.state_dict(), "visual": self.visual.state_dict(),
                "head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "mean": torch.from_numpy(self.mean),
                "std": torch.from_numpy(self.std), "history": json.dumps(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.audio.load_state_dict(state["audio"])
        self.visual.load_state_dict(state["visual"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.history = json.loads(state.get("history", "[]"))


def sync_scores(visual: torch.Tensor, audio_at: Callable[[np.ndarray], torch.Tensor],
                max_offset: int = MAX_OFFSET) -> tuple[np.ndarray, np.ndarray]:
    """Offsets k = -max..max and the mean P_sync of visual features [N,512] against the audio k frames later."""
    offsets = np.arange(-max_offset, max_offset + 1)
    scores = np.array([float(sync_probability(audio_at(np.array(k)), visual).mean()) for k in offsets])
    return offsets, scores


def mouth_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, ridge: float = 1000.0) -> np.ndarray:
    """Predictions [M] for test_x [M,D] of a ridge regression fitted on train_x [N,D] -> train_y [N], on
    standardised features: the audio-to-mouth prediction the features afford a linear readout.

    Why linear: on 10 s of footage the nonlinear mouth head fits the training frames almost exactly and
    generalises worse; the avatar's deformation network reads the features, not the head. The ridge weight is
    fixed, not tuned on held-out frames.
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    alpha = np.linalg.solve(a @ a.T + ridge * np.eye(len(a)), train_y - train_y.mean())   # dual form: N << D
    return b @ (a.T @ alpha) + train_y.mean()


def held_out_r(context: np.ndarray, opening: np.ndarray, n_train: int) -> float:
    """Pearson r on frames n_train.. of :func:`mouth_probe` fitted on the frames before, features [T,D] ->
    mouth opening [T]."""
    pred = mouth_probe(context[:n_train], opening[:n_train], context[n_train:])
    return pearson(pred, opening[n_train:])


def mouth_score(features: np.ndarray, landmarks: np.ndarray, holdout: float,
                blocks: Sequence[int] = ()) -> float:
    """Held-out Pearson r of the mouth-opening prediction from per-frame features [T,D] (5-frame context)
    against the opening of landmarks [T,478,2]; the last ``holdout`` of the frames is held out. NaN if too short.

    ``blocks``: the widths of the encoders whose features lie side by side (a ConcatEncoder's, summing to D).
    Each block gets its own :func:`mouth_probe` and the predictions are averaged (late fusion). One readout
    over [AVE | Whisper] leans on the AVE, whose features fit the frames it was trained on almost exactly,
    and so crowds out Whisper's, which generalise.
    """
    t = len(features)
    n = training_frames(t, holdout)
    if t - n < 3:
        return float("nan")
    opening = mouth_opening(landmarks)
    context = np.clip(np.arange(t)[:, None] + CONTEXT, 0, t - 1)                             # [T,5]
    parts = [features[:, cols][context].reshape(t, -1) for cols in feature_blocks(blocks, features.shape[1])]
    preds = [mouth_probe(x[:n], opening[:n], x[n:]) for x in parts]                        # [T-n] each
    return pearson(np.mean(preds, axis=0), opening[n:])


def train_ave(data: AveData, cfg: AveTrainConfig, checkpoint: Path, progress: ProgressFn,
              cancel: CancelToken) -> tuple[AveTrainer, dict[str, float]]:
    """Train (or resume from ``checkpoint``) to ``cfg.steps``; checkpoints every ``cfg.checkpoint_every``
    steps and when cancelled, so no more than that many steps are ever lost. Returns the trainer and the
    final held-out report."""
    trainer = AveTrainer(data, cfg)
    key = {"config": config_hash(cfg), "data": data.key()}
    if checkpoint.is_file():
        try:
            saved = load_torch(checkpoint)
            if saved.get("key") == key:
                trainer.load_state_dict(saved["trainer"])
                progress(Progress(trainer.step / cfg.steps, f"Resumed audio encoder training at step {trainer.step}"))
        except (Unreadable, KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            trainer = AveTrainer(data, cfg)  # nothing half-loaded is kept
            aside = set_aside(checkpoint)
            progress(Progress(0.0, f"The audio encoder's checkpoint was damaged ({e}); moved aside to {aside.name}, "
                                   "training starts over"))

    def save() -> None:
        with atomic_path(checkpoint) as tmp:
            torch.save({"key": key, "config": to_dict(cfg), "trainer": trainer.state_dict()}, tmp)

    started = time.monotonic()
    first_step = trainer.step
    report: dict[str, float] = {}
    while trainer.step < cfg.steps:
        if cancel.cancelled:
            save()
            cancel.check("Audio encoder training")
        metrics = trainer.train_step()
        if trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps:
            report = trainer.evaluate()
            metrics.update(report)
        trainer.history.append(metrics)
        if trainer.step % cfg.checkpoint_every == 0:
            save()
        rate = (trainer.step - first_step) / max(time.monotonic() - started, 1e-6)
        eta = (cfg.steps - trainer.step) / max(rate, 1e-6)
        progress(Progress(trainer.step / cfg.steps,
                          f"Training audio encoder: step {trainer.step}/{cfg.steps}, ETA {eta:.0f} s", metrics))
    if not report:
        report = trainer.evaluate()
    save()
    return trainer, report
