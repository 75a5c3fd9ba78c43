"""Avatar training (SyncTalk++ Eq. 21-24) as a resumable job: what it reads (TrainData), the trainer and the job.
Its config and presets live in core.avatar.config, its losses in core.avatar.losses, densification in
core.avatar.strategy and the avatar's files in core.avatar.files.

Stage 1 fits the canonical head: the Gaussians, the triplane and the attribute MLP, with L1 + D-SSIM and
densification. Stage 2 trains the whole deformable model, the audio projection and the deformation field
included, with a larger structural (D-SSIM) weight: the perceptual loss of the paper needs LPIPS weights,
which cannot be had offline, so SSIM stands in for it.

The loss is the portrait formulation's: each frame's render is blended into the real crop through the
feathered face mask and compared there, so only what the composite shows is learnt. Frames come from the
first ``1 - holdout`` of the clip only; the rest is for evaluation.

Stage 2 deforms a training frame by the tracked mouths around it, not by its audio: an audio-to-mouth estimate
fits its own training frames far better than any new speech, so a deformation trained on those estimates learns
to follow them only there. Trained on tracked mouths it follows any mouth in the same space, whoever speaks.

Every step draws its frame from a generator seeded by (seed, step) and checkpoints hold the whole state
(Gaussians, networks, Adam moments, densification statistics), so a run resumed after a kill continues
exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.audio.features import MelEncoder, SpeechEncoder, load_features
from core.audio.mouth import standardised_mouths
from core.avatar.archive import keep_current
from core.avatar.config import TrainConfig
from core.avatar.files import load_avatar, save_avatar
from core.avatar.gaussians import canonical_gaussians
from core.avatar.losses import portrait_loss
from core.avatar.model import AvatarModel
from core.avatar.strategy import DensifyStrategy
from core.avatar.views import FootageViews
from core.compose.portrait import portrait_mask
from core.config import to_dict
from core.errors import AvatarStudioError, ProjectError
from core.fsutil import Unreadable, atomic_path, load_torch, set_aside
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AVATAR_FILE, AVATARS_DIR, CHECKPOINT_FILE
from core.media import FrameReader
from core.pipeline import begin
from core.project import Project, writes_project
from core.render.api import RenderOutput, rasterize
from core.speech.targets import tracked_targets
from core.split import MIN_TRAIN_FRAMES, trained_on, training_frames
from core.threads import ThreadGovernor
from core.tracking.regions import eye_boxes, mouth_box
from core.tracking.template import NOSE_TIP, canonical_mesh
from core.tracking.track import load_tracking

STAGE = "avatar"


@dataclass
class TrainData:
    """What training reads, per frame: the view (crop, camera, landmarks, expression), the cropped image, the
    audio features and the tracked mouth; and the fitted face template the Gaussians start from."""

    views: FootageViews
    images: np.ndarray        # uint8 [T,S,S,3] the face crops
    audio: np.ndarray         # float32 [T,D] audio features
    normalised: bool          # whether they come speaker-normalised (mel's, the speech model's), not to be rescaled
    blocks: tuple[int, ...]   # each encoder's width in audio when several lie side by side; () for one
    mouth: np.ndarray         # float32 [T,81] the tracked mouth (core.audio.mouth.mouth_targets), standardised
    template: np.ndarray      # float [468,3] the subject's fitted face template, head space cm
    n_train: int              # frames [0, n_train) are the training part; the rest is held out
    train_frames: np.ndarray  # int [N] the training part's frames with a face in view: those trained on
    calibration: np.ndarray | None = None  # float32 [T,25] for speech-model features: the footage's tracked values
                                           # of what they estimate (core.speech.targets.tracked_targets)

    def __len__(self) -> int:
        return len(self.views)

    def mask(self, i: int) -> np.ndarray:
        """float32 [S,S]: the portrait blend weight of frame i in its crop."""
        crops = self.views.crops
        return portrait_mask(crops.to_crop(self.views.landmarks[i], i), (crops.size, crops.size))

    def mouth_window(self, i: int, model: AvatarModel) -> np.ndarray:
        """float32 [W,81]: the tracked mouths of the frames ``model.lip_from_mouth`` reads for training frame i,
        clamped to the training frames (the held-out ones stay unseen)."""
        return model.mouth_window(self.mouth, i, self.n_train - 1)

    def emphasis_boxes(self, i: int, config: TrainConfig) -> list[tuple[tuple[int, int, int, int], float]]:
        """(x0,y0,x1,y1, extra L1 weight) in frame i's crop: its lips' box (margin a quarter of their size) and
        each eye's box."""
        crops = self.views.crops
        size = (crops.size, crops.size)
        points = crops.to_crop(self.views.landmarks[i], i)
        return [(mouth_box(points, 0.25, size), config.mouth_weight),
                *((box, config.eye_weight) for box in eye_boxes(points, 0.3, size))]


def frame_odds(expr: np.ndarray, boost: float) -> np.ndarray:
    """float [N]: the probabilities of drawing each of N training frames with expressions expr [N,E]: 1 + boost
    x the frame's distance from the median expression (each coefficient over its spread) over the mean distance,
    normalised. A clip's few blinks and brow raises are drawn more often than their share of frames."""
    spread = expr.std(axis=0) + 1e-3                                    # [E]
    distance = np.linalg.norm((expr - np.median(expr, axis=0)) / spread, axis=1)   # [N]
    odds = 1 + boost * distance / max(float(distance.mean()), 1e-9)
    return odds / odds.sum()


def load_train_data(project: Project, config: TrainConfig, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> TrainData:
    """The project's footage cropped around the face, with its tracking and audio features."""
    footage = project.checked_footage()
    tracking = load_tracking(project)
    features = load_features(project)
    audio = features.features
    views = FootageViews.from_tracking(tracking, config.crop_size, config.crop_margin)
    if len(audio) != len(views):
        raise ProjectError(project.root, f"audio features cover {len(audio)} frames but tracking {len(views)}: "
                                         "run the audio stage again")
    crops = views.crops
    images = np.empty((len(views), crops.size, crops.size, 3), np.uint8)
    with FrameReader(footage.path) as reader:
        for i, frame in enumerate(reader):
            if i >= len(images):
                break
            if cancel is not None:
                cancel.check("Avatar training")
            images[i] = crops.crop(frame, i)
            if progress and i % 25 == 0:
                progress(Progress(i / len(images), "Cropping the face"))
    n_train, frames = training_frames(len(views), config.holdout), trained_on(views.valid, config.holdout)
    if len(frames) < MIN_TRAIN_FRAMES:
        raise ProjectError(project.root, f"only {len(frames)} of the {n_train} training frames show a face: the "
                                         "avatar needs footage where the face is in view")
    speech = features.encoder == SpeechEncoder.id
    calibration = tracked_targets(views.landmarks, tracking["blendshapes"], frames) if speech else None
    return TrainData(views, images, audio.astype(np.float32), features.encoder in (MelEncoder.id, SpeechEncoder.id),
                     features.blocks, standardised_mouths(views.landmarks, frames), tracking["template"], n_train,
                     frames, calibration)


def initial_model(project: Project, data: TrainData, config: TrainConfig) -> AvatarModel:
    """Canonical Gaussians from the fitted template, coloured from the first training frame; the networks'
    initial weights drawn from ``config.seed``."""
    views, first = data.views, int(data.train_frames[0])
    with FrameReader(project.checked_footage().path) as reader:
        frame = reader.read(first)
    head = canonical_gaussians(data.template, canonical_mesh().triangles, frame, views.rot[first], views.trans[first],
                               *views.intrinsics, config.avatar.init)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = AvatarModel(head.splats, float(data.template[NOSE_TIP, 1]), data.audio.shape[1], config.avatar)
    if data.calibration is not None:
        model.fit_calibration(data.calibration, data.mouth, data.train_frames)
    else:
        model.fit_readout(data.audio, data.mouth, data.train_frames, standardise=not data.normalised,
                          blocks=data.blocks)
    return model


@dataclass
class StepResult:
    step: int                 # steps done after this one
    stage: int
    loss: float
    psnr: float               # dB over the face mask of this step's (training) frame


class AvatarTrainer:
    """One optimiser over every parameter; per-Gaussian groups are resized in place by densification."""

    def __init__(self, model: AvatarModel, data: TrainData, config: TrainConfig):
        self.model, self.data, self.config = model, data, config
        self.step = 0
        c = config
        groups = [
            {"name": "means", "params": [model.means], "lr": c.lr_means},
            {"name": "quats", "params": [model.quats], "lr": c.lr_quats},
            {"name": "log_scales", "params": [model.log_scales], "lr": c.lr_scales},
            {"name": "opacity_logits", "params": [model.opacity_logits], "lr": c.lr_opacity},
            {"name": "colors", "params": [model.colors], "lr": c.lr_colors},
            {"name": "triplane", "params": list(model.triplane.parameters()), "lr": c.lr_triplane},
            {"name": "networks", "params": [*model.attributes.parameters(), *model.audio.parameters(),
                                            *model.deform.parameters(), *model.lip_head.parameters()],
             "lr": c.lr_networks},
        ]
        self.optimizer = torch.optim.Adam(groups, eps=1e-15)
        self.strategy = DensifyStrategy(config, len(model))
        self.background = torch.zeros(3)
        # Stage 1 draws frames evenly (the still head must be the usual one); stage 2, where the expression
        # deforms the head, draws the rarer expressions more often.
        self.odds = frame_odds(data.views.expr[data.train_frames], c.rare_expression_boost)   # [N]

    @property
    def stage(self) -> int:
        return 1 if self.step < self.config.stage1_steps else 2

    def render(self, i: int, stage: int | None = None) -> tuple[RenderOutput, Tensor | None]:
        """The render of frame i's crop and, in stage 2, the lip feature [A] that deformed it and its expression.
        The lip feature comes from the tracked mouths around a training frame (the deformation learns what a
        mouth looks like from mouths it can trust) and from the audio, as when driving, for a held-out frame."""
        stage = stage or self.stage
        lip = None
        if stage == 1:
            gaussians = self.model.gaussians()
        else:
            if i < self.data.n_train:
                lip = self.model.lip_from_mouth(torch.from_numpy(self.data.mouth_window(i, self.model)))  # [A]
            else:
                lip = self.model.lip(torch.from_numpy(self.model.audio_window(self.data.audio, i)))     # [A]
            gaussians = self.model.gaussians(lip, torch.from_numpy(self.data.views.expr[i]))
        out = rasterize(**gaussians, camera=self.data.views.camera(i), background=self.background,
                        backend=self.config.backend)
        return out, lip

    def train_step(self) -> StepResult:
        c, stage = self.config, self.stage
        rng = np.random.default_rng([c.seed, self.step])
        i = int(rng.choice(self.data.train_frames, p=self.odds if stage == 2 else None))
        target = torch.from_numpy(self.data.images[i]).float() / 255          # [S,S,3]
        weight = torch.from_numpy(self.data.mask(i))                          # [S,S]
        out, lip = self.render(i, stage)
        loss, mse = portrait_loss(out.rgb, target, weight, c.dssim_weight[stage - 1],
                                  self.data.emphasis_boxes(i, c))
        if lip is not None:
            loss = loss + c.lip_weight * F.mse_loss(self.model.lip_head(lip), torch.from_numpy(self.data.mouth[i]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        decay = 0.01 ** (self.step / max(c.steps - 1, 1))
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = c.lr_means * decay
        if stage == 1:
            self.strategy.step_post_backward(self.model, self.data.views.camera(i))
        self.optimizer.step()
        self.step += 1
        if stage == 1:
            self.strategy.step_post_step(self.model, self.optimizer, self.step)
        return StepResult(self.step, stage, loss.item(), float(-10 * torch.log10(mse.clamp_min(1e-10))))

    def state_dict(self) -> dict:
        return {"step": self.step, "n": len(self.model), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), **self.strategy.state_dict()}

    @classmethod
    def from_state(cls, state: dict, data: TrainData, config: TrainConfig) -> "AvatarTrainer":
        model = AvatarModel.empty(int(state["n"]), data.audio.shape[1], config.avatar)
        model.load_state_dict(state["model"])
        trainer = cls(model, data, config)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step = int(state["step"])
        trainer.strategy.load_state_dict(state)
        return trainer


@dataclass
class TrainResult:
    steps: int
    gaussians: int
    history: list[dict[str, float]] = field(default_factory=list)   # the curve points: step, stage, loss, psnr


@dataclass
class TrainAvatarJob:
    """Train the project's avatar; resumes from the project's checkpoint when it was made with the same config
    and inputs. ``pause`` (set by the studio) holds the job between steps without losing anything."""

    project: Project
    config: TrainConfig = TrainConfig()
    pause: threading.Event = field(default_factory=threading.Event)
    name: str = "Train avatar"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> TrainResult:
        config, project = self.config, self.project
        if config.backend == "cuda" and not torch.cuda.is_available():
            raise AvatarStudioError(f"preset {config.preset!r} renders with CUDA, and this machine has none: "
                                    "use the cpu-draft preset")
        run = begin(project, STAGE, to_dict(config))  # never train on another footage's tracking or features
        key = json.dumps({"config": run.config, "inputs": run.inputs}, sort_keys=True)
        if run.up_to_date:
            try:
                model = load_avatar(project.path(AVATAR_FILE))[0]
                progress(Progress(1.0, "The avatar is up to date"))
                return TrainResult(config.steps, len(model))
            except ProjectError as e:  # damaged, and moved aside: train it again
                progress(Progress(0.0, str(e)))

        data = load_train_data(project, config, lambda p: progress(Progress(0.02 * p.fraction, p.message)), cancel)
        checkpoint = project.path(CHECKPOINT_FILE)
        trainer, history = self._resume(checkpoint, key, data, progress)
        if trainer is None:
            kept = keep_current(project)  # another config's avatar or run: kept, never overwritten
            if kept is not None:
                progress(Progress(0.02, f"The previous avatar is kept in {AVATARS_DIR}/{kept.name}"))
            trainer = AvatarTrainer(initial_model(project, data, config), data, config)

        def save() -> None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"key": key, "trainer": trainer.state_dict(), "history": json.dumps(history)}, tmp)

        governor = ThreadGovernor()        # the process's threads, one while other processes are busy
        while trainer.step < config.steps:
            governor.update()
            while self.pause.is_set() and not cancel.cancelled:
                time.sleep(0.05)
            if cancel.cancelled:
                save()
                cancel.check(self.name)
            r = trainer.train_step()
            point = {"step": r.step, "stage": r.stage, "loss": r.loss, "psnr": r.psnr, "gaussians": len(trainer.model)}
            if r.step % config.report_every == 0 or r.step == config.steps:
                history.append(point)
            image = self._preview(trainer) if r.step % config.preview_every == 0 else None
            progress(Progress(0.02 + 0.97 * r.step / config.steps,
                              f"Stage {r.stage}/2 · step {r.step}/{config.steps} · loss {r.loss:.4f}",
                              point if r.step % config.report_every == 0 else None, image))
            if r.step % config.checkpoint_every == 0 or r.step == config.steps:
                save()

        save_avatar(project.path(AVATAR_FILE), trainer.model, config)
        run.record([AVATAR_FILE])
        progress(Progress(1.0, f"Trained the avatar: {config.steps} steps, {len(trainer.model)} Gaussians"))
        return TrainResult(trainer.step, len(trainer.model), history)

    def _resume(self, checkpoint: Path, key: str, data: TrainData,
                progress: ProgressFn) -> tuple[AvatarTrainer | None, list]:
        """The checkpointed trainer and curve when the checkpoint was made with this config and these inputs. A
        damaged checkpoint is moved aside and training starts over, saying so."""
        if not checkpoint.is_file():
            return None, []
        try:
            saved = load_torch(checkpoint)
            if saved.get("key") != key:
                return None, []
            return AvatarTrainer.from_state(saved["trainer"], data, self.config), json.loads(saved["history"])
        except (Unreadable, KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            aside = set_aside(checkpoint)
            progress(Progress(0.02, f"The checkpoint was damaged ({e}); moved aside to {aside.name}, training "
                                    "starts over"))
            return None, []

    @staticmethod
    def _preview(trainer: AvatarTrainer) -> np.ndarray:
        """uint8 [S,2S,3]: the render of the last held-out frame beside the real crop."""
        i = len(trainer.data) - 1
        with torch.no_grad():
            rgb = trainer.render(i)[0].rgb.clamp(0, 1).numpy()
        render = np.round(rgb * 255).astype(np.uint8)
        return np.concatenate([render, trainer.data.images[i]], axis=1)
