"""Avatar training (SyncTalk++ Eq. 21-24) as a resumable job.

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
from core.audio.mouth import mouth_targets
from core.audio.train_ave import training_frames
from core.avatar.gaussians import InitConfig, canonical_gaussians
from core.avatar.model import GAUSSIAN_PARAMS, AvatarConfig, AvatarModel
from core.avatar.views import FootageViews
from core.compose.portrait import portrait_mask
from core.config import from_dict, to_dict
from core.errors import AvatarStudioError, ProjectError
from core.fsutil import atomic_path
from core.jobs import CancelToken, Progress, ProgressFn
from core.media import FrameReader
from core.pipeline import require_current
from core.project import Project
from core.render.api import RenderOutput, rasterize
from core.render.camera import Camera
from core.render.cpu import quat_to_rotmat
from core.speech.targets import tracked_targets
from core.tracking.regions import mouth_box
from core.tracking.template import NOSE_TIP, canonical_mesh
from core.tracking.track import load_tracking

STAGE = "avatar"
AVATAR_FILE = "avatar.pt"          # the trained avatar: config and model (what eval, dub and the viewport load)
CHECKPOINT_FILE = "avatar_train.pt"  # the resumable training state


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "cpu-draft"
    backend: str = "cpu"               # the rasterizer: "cpu" (ours) or "cuda" (gsplat)
    crop_size: int = 256               # render resolution, pixels per side of the face crop
    crop_margin: float = 1.5           # crop side over the largest face-oval extent
    avatar: AvatarConfig = AvatarConfig(init=InitConfig(n_gaussians=10_000))
    max_gaussians: int = 20_000
    stage1_steps: int = 1500           # cpu-draft: both stages within the 20-minute budget (benchmarks/train.py)
    stage2_steps: int = 3000
    dssim_weight: tuple[float, float] = (0.2, 0.4)   # per stage; L1 takes the rest
    mouth_weight: float = 5.0          # extra L1 weight of the lips' box
    lip_weight: float = 0.05           # stage 2: the lip feature must predict the tracked mouth (MSE, z-scores)
    lr_means: float = 2e-3             # cm per step, decayed to 1% by the end (3DGS's schedule)
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacity: float = 5e-2
    lr_colors: float = 2.5e-3
    lr_triplane: float = 1e-2
    lr_networks: float = 1e-3
    densify_every: int = 100           # stage 1 only, from densify_every until densify_until of stage 1
    densify_until: float = 0.7
    densify_grow: float = 0.1          # at most this fraction of N added per densification
    split_scale: float = 0.15          # cm: above it a chosen Gaussian splits in two, below it is cloned
    prune_opacity: float = 0.005
    holdout: float = 0.2               # the clip's last fraction, never trained on
    checkpoint_every: int = 100
    report_every: int = 10             # loss/PSNR curve points
    preview_every: int = 100           # preview images
    seed: int = 0

    @property
    def steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    def __post_init__(self) -> None:
        if self.backend not in ("cpu", "cuda"):
            raise ValueError(f"backend must be 'cpu' or 'cuda', got {self.backend!r}")
        if self.stage1_steps < 0 or self.stage2_steps < 0 or self.steps == 0:
            raise ValueError("training needs at least one step")


PRESETS: dict[str, TrainConfig] = {
    # A CPU draft: 256² crops, 10k Gaussians densified up to 20k, our rasterizer.
    "cpu-draft": TrainConfig(),
    # The paper's setting on a GPU: 512² crops, more Gaussians and steps, gsplat.
    "gpu-quality": TrainConfig(preset="gpu-quality", backend="cuda", crop_size=512, max_gaussians=100_000,
                               avatar=AvatarConfig(init=InitConfig(n_gaussians=40_000)),
                               stage1_steps=6000, stage2_steps=8000, checkpoint_every=500, preview_every=250),
    # For tests: a few seconds on a CPU.
    "tiny": TrainConfig(preset="tiny", crop_size=64, max_gaussians=1200,
                        avatar=AvatarConfig(init=InitConfig(n_gaussians=1000)),
                        stage1_steps=12, stage2_steps=12, densify_every=4, checkpoint_every=5,
                        report_every=1, preview_every=4),
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise AvatarStudioError(f"unknown training preset {name!r} (choose one of {', '.join(PRESETS)})")
    return PRESETS[name]


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
    n_train: int              # frames [0, n_train) are trained on
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

    def lips_box(self, i: int) -> tuple[int, int, int, int]:
        """x0,y0,x1,y1: the box around frame i's lips in its crop (margin a quarter of their size)."""
        crops = self.views.crops
        return mouth_box(crops.to_crop(self.views.landmarks[i], i), 0.25, (crops.size, crops.size))


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
    n_train = training_frames(len(views), config.holdout)
    speech = features.encoder == SpeechEncoder.id
    calibration = tracked_targets(views.landmarks, tracking["blendshapes"], n_train) if speech else None
    return TrainData(views, images, audio.astype(np.float32), features.encoder in (MelEncoder.id, SpeechEncoder.id),
                     features.blocks, standardised_mouths(views.landmarks, n_train), tracking["template"], n_train,
                     calibration)


def standardised_mouths(landmarks: np.ndarray, n_train: int) -> np.ndarray:
    """float32 [T,81]: each frame's tracked mouth (core.audio.mouth.mouth_targets) of landmarks [T,478,2], as
    z-scores over the training frames [0, n_train): what the lip feature reads in training."""
    mouth = mouth_targets(landmarks)                                                     # [T,81]
    return ((mouth - mouth[:n_train].mean(0)) / (mouth[:n_train].std(0) + 1e-6)).astype(np.float32)


def initial_model(project: Project, data: TrainData, config: TrainConfig) -> AvatarModel:
    """Canonical Gaussians from the fitted template, coloured from the first training frame; the networks'
    initial weights drawn from ``config.seed``."""
    views = data.views
    with FrameReader(project.checked_footage().path) as reader:
        frame = reader.read(0)
    head = canonical_gaussians(data.template, canonical_mesh().triangles, frame, views.rot[0], views.trans[0],
                               *views.intrinsics, config.avatar.init)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = AvatarModel(head.splats, float(data.template[NOSE_TIP, 1]), data.audio.shape[1], config.avatar)
    frames = np.arange(data.n_train)
    if data.calibration is not None:
        model.fit_calibration(data.calibration, data.mouth, frames)
    else:
        model.fit_readout(data.audio, data.mouth, frames, standardise=not data.normalised, blocks=data.blocks)
    return model


def ssim_torch(a: Tensor, b: Tensor) -> Tensor:
    """float [H,W]: SSIM of images [H,W,3] at every pixel (11x11 Gaussian window, sigma 1.5, as core.metrics,
    zero-padded at the borders), averaged over the channels. The window is applied as two 1D passes."""
    x = torch.arange(11, dtype=a.dtype) - 5
    g = torch.exp(-x * x / (2 * 1.5**2))
    g = g / g.sum()                                                     # [11]
    rows, cols = g.view(1, 1, 1, 11).expand(3, 1, 1, 11), g.view(1, 1, 11, 1).expand(3, 1, 11, 1)

    def blur(t: Tensor) -> Tensor:                                      # [1,3,H,W]
        return F.conv2d(F.conv2d(t, rows, padding=(0, 5), groups=3), cols, padding=(5, 0), groups=3)

    a, b = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]         # [1,3,H,W]
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s[0].mean(0)                                                 # [H,W]


def portrait_loss(render: Tensor, target: Tensor, weight: Tensor, dssim: float, mouth: tuple[int, int, int, int],
                  mouth_weight: float) -> tuple[Tensor, Tensor]:
    """(loss, masked MSE) of render [S,S,3] against target [S,S,3] through the blend weight [S,S]: L1 and
    D-SSIM of the composite, averaged over the weighted pixels (computed in the weight's box only: outside it
    the composite is the target). The L1 of the pixels in the ``mouth`` box (x0,y0,x1,y1) counts
    ``1 + mouth_weight`` times: the lips are a few percent of the face and all of lip sync."""
    x0, y0, x1, y1 = mouth
    emphasis = torch.ones_like(weight)
    emphasis[y0:y1, x0:x1] += mouth_weight                              # [S,S]
    ys, xs = torch.nonzero(weight > 0, as_tuple=True)
    if len(ys) == 0:
        raise AvatarStudioError("a training frame has an empty face mask")
    box = (slice(max(int(ys.min()) - 5, 0), int(ys.max()) + 6), slice(max(int(xs.min()) - 5, 0), int(xs.max()) + 6))
    render, target, weight, emphasis = render[box], target[box], weight[box], emphasis[box]
    w = weight[..., None]                                               # [h,w,1]
    composite = w * render + (1 - w) * target                           # [h,w,3]
    total = weight.sum()
    diff = (composite - target).abs()
    l1 = (diff * emphasis[..., None]).sum() / (3 * (weight * emphasis).sum())
    d_ssim = ((1 - ssim_torch(composite, target)) * weight).sum() / total
    mse = (diff.detach() ** 2).sum() / (3 * total)
    return (1 - dssim) * l1 + dssim * d_ssim, mse


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
        self.grad_sum = torch.zeros(len(model))     # [N] accumulated screen-space positional gradient
        self.grad_count = torch.zeros(len(model))   # [N] steps each Gaussian was seen
        self.background = torch.zeros(3)

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
        i = int(rng.integers(self.data.n_train))
        target = torch.from_numpy(self.data.images[i]).float() / 255          # [S,S,3]
        weight = torch.from_numpy(self.data.mask(i))                          # [S,S]
        out, lip = self.render(i, stage)
        loss, mse = portrait_loss(out.rgb, target, weight, c.dssim_weight[stage - 1], self.data.lips_box(i),
                                  c.mouth_weight)
        if lip is not None:
            loss = loss + c.lip_weight * F.mse_loss(self.model.lip_head(lip), torch.from_numpy(self.data.mouth[i]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        decay = 0.01 ** (self.step / max(c.steps - 1, 1))
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = c.lr_means * decay
        if stage == 1:
            self._accumulate(self.data.views.camera(i))
        self.optimizer.step()
        self.step += 1
        if stage == 1 and self.step % c.densify_every == 0 and self.step <= c.densify_until * c.stage1_steps:
            self.densify()
        return StepResult(self.step, stage, loss.item(), float(-10 * torch.log10(mse.clamp_min(1e-10))))

    def _accumulate(self, camera: Camera) -> None:
        """Add each Gaussian's positional gradient in screen pixels: |d loss / d xy_camera| * z / f."""
        grad = self.model.means.grad
        if grad is None:
            return
        view = torch.tensor(camera.view, dtype=torch.float32)                         # [4,4]
        with torch.no_grad():
            g_cam = grad @ view[:3, :3].T                                       # [N,3]
            z = (self.model.means @ view[:3, :3].T + view[:3, 3])[:, 2].clamp_min(1e-3)  # [N]
            g_px = g_cam[:, :2].norm(dim=1) * z / camera.fx                      # [N]
            seen = g_px > 0
            self.grad_sum += g_px
            self.grad_count += seen

    def densify(self) -> None:
        """Prune the transparent, then grow by the largest average screen-space gradients within the budget:
        split the large chosen Gaussians in two (each 1/1.6 the scale, sampled inside the parent), clone the
        small ones. An equivalent of 3DGS's strategy with a budget instead of a gradient threshold, so the
        count stays within ``max_gaussians`` on any footage."""
        c, m = self.config, self.model
        with torch.no_grad():
            n = len(m)
            prune = torch.sigmoid(m.opacity_logits) < c.prune_opacity                   # [N]
            mean_grad = torch.where(self.grad_count > 0, self.grad_sum / self.grad_count.clamp_min(1), 0.0)
            mean_grad[prune] = 0
            room = c.max_gaussians - (n - int(prune.sum()))
            grow = max(0, min(room, int(c.densify_grow * n), int((mean_grad > 0).sum())))
            chosen = torch.zeros(n, dtype=torch.bool)
            chosen[torch.argsort(mean_grad, descending=True, stable=True)[:grow]] = True
            big = m.log_scales.exp().max(dim=1).values > c.split_scale                  # [N]
            split, clone = chosen & big, chosen & ~big
            keep = ~prune & ~split

            generator = torch.Generator().manual_seed(c.seed * 100_003 + self.step)
            idx = torch.nonzero(split).squeeze(1)                                          # [K]
            scales = m.log_scales[idx].exp()                                              # [K,3]
            rotm = quat_to_rotmat(m.quats[idx])                                           # [K,3,3]
            samples = torch.randn(2, len(idx), 3, generator=generator) * scales           # [2,K,3]
            split_means = (m.means[idx] + torch.einsum("kij,skj->ski", rotm, samples)).reshape(-1, 3)  # [2K,3]
            new = {
                "means": torch.cat([m.means[clone], split_means]),
                "quats": torch.cat([m.quats[clone], m.quats[idx].repeat(2, 1)]),
                "log_scales": torch.cat([m.log_scales[clone], (m.log_scales[idx] - np.log(1.6)).repeat(2, 1)]),
                "opacity_logits": torch.cat([m.opacity_logits[clone], m.opacity_logits[idx].repeat(2)]),
                "colors": torch.cat([m.colors[clone], m.colors[idx].repeat(2, 1)]),
            }
            for name in GAUSSIAN_PARAMS:
                self._resize(name, keep, new[name])
            self.grad_sum = torch.zeros(len(m))
            self.grad_count = torch.zeros(len(m))

    def _resize(self, name: str, keep: Tensor, extra: Tensor) -> None:
        """Replace Gaussian parameter ``name`` by its kept rows [K,...] plus ``extra`` [M,...]; its Adam
        moments follow the rows, the new rows starting at zero."""
        old = getattr(self.model, name)
        param = torch.nn.Parameter(torch.cat([old.detach()[keep], extra]))
        group = next(g for g in self.optimizer.param_groups if g.get("name") == name)
        state = self.optimizer.state.pop(old, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = torch.cat([state[key][keep], torch.zeros_like(extra)])
        group["params"] = [param]
        if state:
            self.optimizer.state[param] = state
        setattr(self.model, name, param)

    def state_dict(self) -> dict:
        return {"step": self.step, "n": len(self.model), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "grad_sum": self.grad_sum, "grad_count": self.grad_count}

    @classmethod
    def from_state(cls, state: dict, data: TrainData, config: TrainConfig) -> "AvatarTrainer":
        model = AvatarModel.empty(int(state["n"]), data.audio.shape[1], config.avatar)
        model.load_state_dict(state["model"])
        trainer = cls(model, data, config)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step = int(state["step"])
        trainer.grad_sum, trainer.grad_count = state["grad_sum"], state["grad_count"]
        return trainer


@dataclass
class TrainResult:
    steps: int
    gaussians: int
    history: list[dict[str, float]] = field(default_factory=list)   # the curve points: step, stage, loss, psnr


def save_avatar(path: Path, model: AvatarModel, config: TrainConfig) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": json.dumps(to_dict(config)), "n": len(model), "audio_dim": len(model.audio_mean),
                    "model": model.state_dict()}, tmp)


def load_avatar(path: Path) -> tuple[AvatarModel, TrainConfig]:
    """The trained avatar saved by training; ProjectError when missing or unreadable."""
    if not path.is_file():
        raise ProjectError(path, "no trained avatar: train it first (avatar-studio-cli train)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        config = from_dict(TrainConfig, json.loads(saved["config"]))
        model = AvatarModel.empty(int(saved["n"]), int(saved["audio_dim"]), config.avatar)
        model.load_state_dict(saved["model"])
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
        raise ProjectError(path, f"the avatar cannot be read ({e}): train it again") from e
    return model.eval(), config


@dataclass
class TrainAvatarJob:
    """Train the project's avatar; resumes from the project's checkpoint when it was made with the same config
    and inputs. ``pause`` (set by the studio) holds the job between steps without losing anything."""

    project: Project
    config: TrainConfig = TrainConfig()
    pause: threading.Event = field(default_factory=threading.Event)
    name: str = "Train avatar"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> TrainResult:
        config, project = self.config, self.project
        footage = project.checked_footage()
        inputs = {"footage": footage.sha256, **{s: project.stages[s].created for s in ("tracking", "audio")
                                               if s in project.stages}}
        if config.backend == "cuda" and not torch.cuda.is_available():
            raise AvatarStudioError(f"preset {config.preset!r} renders with CUDA, and this machine has none: "
                                    "use the cpu-draft preset")
        for needed in ("tracking", "audio"):
            if needed not in project.stages:
                raise ProjectError(project.root, f"has no {needed} results yet: run the {needed} stage first")
            require_current(project, needed)   # never train on another footage's tracking or features
        key = json.dumps({"config": to_dict(config), "inputs": inputs}, sort_keys=True)
        if not project.is_stale(STAGE, to_dict(config), inputs) and project.path(AVATAR_FILE).is_file():
            progress(Progress(1.0, "The avatar is up to date"))
            return TrainResult(config.steps, len(load_avatar(project.path(AVATAR_FILE))[0]))

        data = load_train_data(project, config, lambda p: progress(Progress(0.02 * p.fraction, p.message)), cancel)
        checkpoint = project.path(CHECKPOINT_FILE)
        trainer, history = self._resume(checkpoint, key, data)
        if trainer is None:
            trainer = AvatarTrainer(initial_model(project, data, config), data, config)

        def save() -> None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"key": key, "trainer": trainer.state_dict(), "history": json.dumps(history)}, tmp)

        while trainer.step < config.steps:
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
        project.record_stage(STAGE, [AVATAR_FILE, CHECKPOINT_FILE], to_dict(config), inputs)
        project.save()
        progress(Progress(1.0, f"Trained the avatar: {config.steps} steps, {len(trainer.model)} Gaussians"))
        return TrainResult(trainer.step, len(trainer.model), history)

    def _resume(self, checkpoint: Path, key: str, data: TrainData) -> tuple[AvatarTrainer | None, list]:
        """The checkpointed trainer and curve when the checkpoint was made with this config and these inputs."""
        if not checkpoint.is_file():
            return None, []
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
            if saved.get("key") != key:
                return None, []
            return AvatarTrainer.from_state(saved["trainer"], data, self.config), json.loads(saved["history"])
        except (OSError, KeyError, RuntimeError, ValueError, TypeError, EOFError):
            return None, []   # unreadable (killed mid-write cannot happen: writes are atomic): start over

    @staticmethod
    def _preview(trainer: AvatarTrainer) -> np.ndarray:
        """uint8 [S,2S,3]: the render of the last held-out frame beside the real crop."""
        i = len(trainer.data) - 1
        with torch.no_grad():
            rgb = trainer.render(i)[0].rgb.clamp(0, 1).numpy()
        render = np.round(rgb * 255).astype(np.uint8)
        return np.concatenate([render, trainer.data.images[i]], axis=1)
