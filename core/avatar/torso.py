"""SyncTalk++'s Torso Restorer (III-F): where the rendered face's jaw and the footage's differ, the band around the
face's lower edge (chin, jaw line, neck) shows a gap or a double contour after the blend. A light U-Net learnt per
subject on its own footage fills that band from what surrounds it.

Self-supervised as in the paper: a 256² crop around the lower face of a training frame, turned by a small random
angle; the face mask grown by a random margin; the band between the two removed and the network asked to rebuild it
from the face inside and the neck and background outside. At render the band is removed at a fixed margin and
rebuilt after the Portrait-Sync blend, so the new jaw and the footage's neck meet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.avatar.config import TrainConfig
from core.config import from_dict, to_dict
from core.fsutil import atomic_path
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import TORSO_CHECKPOINT_FILE, TORSO_FILE
from core.media import FrameReader
from core.options import option
from core.pipeline import begin, require_current, status
from core.project import Project, damaged, writes_project
from core.split import trained_on
from core.tracking.template import FACE_OVAL
from core.tracking.track import load_tracking

STAGE = "torso"
CHIN = 152  # the face oval's lowest landmark
EDGE_PX = 12  # crop pixels over which the restored band fades in at its edges and at the crop's border


@dataclass(frozen=True)
class TorsoConfig:
    size: int = 256               # the lower-face crop's pixels per side
    crop_scale: float = 1.3       # the crop's side over the face's width
    grow: float = 0.03            # the face mask: the oval grown by this fraction of the face width (the blend's)
    margin: float = 0.12          # the band at render: the face mask grown by this much more
    margin_range: tuple[float, float] = (0.05, 0.2)  # the band's margin while training, drawn per sample
    max_turn: float = 10.0        # degrees: training crops turned by up to this
    width: int = 16               # the U-Net's first level's channels (doubling at each of its 4 levels)
    steps: int = option(540, "training steps (a step: a batch of crops)", metavar="N")
    cache_frames: int = 400       # training frames decoded once, in order, into crops (spread over the footage)
    batch: int = 4
    lr: float = 2e-3
    checkpoint_every: int = 100
    preview_every: int = 100      # steps between preview images (the last frame with a face, held out)
    seed: int = 0


class UNet(nn.Module):
    """4-level U-Net: RGB with the band blanked and the band's mask in, RGB [0,1] out. Kept channels-last, which
    oneDNN's CPU convolutions run faster."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(b, b, 3, padding=1), nn.ReLU(inplace=True))

        self.down = nn.ModuleList([block(4, w[0]), block(w[0], w[1]), block(w[1], w[2]), block(w[2], w[3])])
        self.up = nn.ModuleList([block(w[3] + w[2], w[2]), block(w[2] + w[1], w[1]), block(w[1] + w[0], w[0])])
        self.out = nn.Conv2d(w[0], 3, 1)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)                 # [B,4,S,S]
        skips = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for level, skip in zip(self.up, reversed(skips[:-1])):
            x = level(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip],
                                dim=1))
        return torch.sigmoid(self.out(x))


def crop_affine(landmarks: np.ndarray, config: TorsoConfig, turn: float = 0.0) -> np.ndarray:
    """float64 [2,3]: footage pixels -> the lower-face crop's, turned by ``turn`` degrees about its centre."""
    oval = np.asarray(landmarks, np.float64)[FACE_OVAL]
    face_w = oval[:, 0].max() - oval[:, 0].min()
    centre = np.array([oval[:, 0].mean(), landmarks[CHIN][1] - 0.1 * face_w])
    side = config.crop_scale * face_w
    scale = config.size / side
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), turn, scale)
    m[:, 2] += config.size / 2 - centre
    return m


def band_mask(landmarks_crop: np.ndarray, face_w: float, config: TorsoConfig, margin: float) -> np.ndarray:
    """bool [S,S]: the crop's band between the face mask (the oval grown by ``grow``) and the face mask grown by
    ``margin`` more (fractions of the face width ``face_w``, in crop pixels)."""
    s = config.size
    inside = np.zeros((s, s), np.uint8)
    cv2.fillPoly(inside, [np.round(landmarks_crop[FACE_OVAL] - 0.5).astype(np.int32)], 1)
    outside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)                       # px from the oval
    return (outside > config.grow * face_w) & (outside <= (config.grow + margin) * face_w)


def sample(frame: np.ndarray, landmarks: np.ndarray, config: TorsoConfig, margin: float, turn: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crop float32 [S,S,3] in [0,1], band bool [S,S], affine [2,3]) of a frame [H,W,3] and its landmarks."""
    m = crop_affine(landmarks, config, turn)
    crop = cv2.warpAffine(frame, m, (config.size, config.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
    return crop, band_of(landmarks, m, config, margin), m


CACHE_REACH = 1.25  # a cached crop's side over the training crop's: room to turn it by max_turn


class LowerFaceCache:
    """The lower-face surroundings of up to ``config.cache_frames`` training frames, decoded once in order and
    kept as crops CACHE_REACH times the training crop's side at its pixel density. Training draws turned crops
    from these instead of seeking into compressed footage for every sample."""

    def __init__(self, reader: FrameReader, frames: np.ndarray, landmarks: np.ndarray, config: TorsoConfig,
                 cancel: CancelToken | None = None, progress: ProgressFn | None = None):
        pick = np.linspace(0, len(frames) - 1, min(len(frames), config.cache_frames)).round().astype(int)
        self.frames = np.unique(frames[pick])                                           # [C] footage frames
        self.config, self.landmarks = config, landmarks
        self._cached: dict[int, tuple[np.ndarray, np.ndarray]] = {}                     # frame -> (uint8 [R,R,3], [2,3])
        side = int(round(config.size * CACHE_REACH))
        wanted, last = set(self.frames.tolist()), int(self.frames[-1])
        for i, frame in enumerate(reader):
            if cancel is not None and cancel.cancelled:
                cancel.check("Reading the footage for the torso restorer")
            if i in wanted:
                m = crop_affine(landmarks[i], config)
                m[:, 2] += (side - config.size) / 2                                     # same centre, wider
                self._cached[i] = (cv2.warpAffine(frame, m, (side, side), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REFLECT), m)
                if progress is not None:
                    progress(Progress(0.0, f"Reading the footage: {len(self._cached)}/{len(self.frames)} frames"))
            if i >= last:
                break

    def sample(self, i: int, margin: float, turn: float) -> tuple[np.ndarray, np.ndarray]:
        """(crop float32 [S,S,3] in [0,1], band bool [S,S]) of cached frame i, as ``sample`` makes from the frame."""
        image, cached = self._cached[i]
        m = crop_affine(self.landmarks[i], self.config, turn)                          # footage -> crop
        to_footage = cv2.invertAffineTransform(cached)                                   # cache -> footage
        from_cache = m[:, :2] @ to_footage[:, :2], m[:, :2] @ to_footage[:, 2] + m[:, 2]
        s = self.config.size
        crop = cv2.warpAffine(image, np.column_stack(from_cache), (s, s), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
        return crop, band_of(self.landmarks[i], m, self.config, margin)


def band_of(landmarks: np.ndarray, m: np.ndarray, config: TorsoConfig, margin: float) -> np.ndarray:
    """bool [S,S]: the band (``band_mask``) of a frame's landmarks [478,2] in the crop made by affine m [2,3]."""
    pts = np.asarray(landmarks, np.float64) @ m[:, :2].T + m[:, 2]
    oval = pts[FACE_OVAL]
    return band_mask(pts, oval[:, 0].max() - oval[:, 0].min(), config, margin)


def network_input(crop: np.ndarray, band: np.ndarray) -> Tensor:
    """float32 [4,S,S]: the crop with the band blanked, and the band."""
    x = np.concatenate([crop * ~band[..., None], band[..., None].astype(np.float32)], axis=2)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def rebuild(net: UNet, crop: np.ndarray, band: np.ndarray) -> np.ndarray:
    """float32 [S,S,3] in [0,1]: the restorer's output for a crop [S,S,3] with its band [S,S] taken out."""
    with torch.inference_mode():
        return net(network_input(crop, band)[None])[0].numpy().transpose(1, 2, 0)


def blend_weight(band: np.ndarray, feather: int = EDGE_PX) -> np.ndarray:
    """float32 [S,S]: the band's weight in the frame: feathered across its edges, and falling to 0 toward the
    crop's border, so neither the band's edge nor the crop's shows as a seam."""
    s = band.shape[0]
    soft = cv2.GaussianBlur(band.astype(np.float32), (0, 0), feather / 2) * band           # inside the band only
    ramp = np.clip(np.minimum(np.arange(s), np.arange(s)[::-1]) / feather, 0.0, 1.0)      # [S]
    return (soft / max(soft.max(), 1e-6) * np.minimum.outer(ramp, ramp)).astype(np.float32)


def restore(net: UNet, frame: np.ndarray, landmarks: np.ndarray, config: TorsoConfig = TorsoConfig()) -> np.ndarray:
    """uint8 [H,W,3]: ``frame`` (a blended dub frame) with the band around its face's lower edge rebuilt by the
    restorer; pixels outside the band are the frame's, bit for bit."""
    crop, band, m = sample(frame, landmarks, config, config.margin)
    pred = rebuild(net, crop, band)
    h, w = frame.shape[:2]
    inv = cv2.invertAffineTransform(m)
    back = cv2.warpAffine(pred * 255.0, inv, (w, h), flags=cv2.INTER_LINEAR)
    where = cv2.warpAffine(blend_weight(band), inv, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    out = frame.astype(np.float32) * (1 - where) + back * where
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def preview(net: UNet, frame: np.ndarray, landmarks: np.ndarray, config: TorsoConfig = TorsoConfig()) -> np.ndarray:
    """uint8 [S,3S,3]: one frame's lower-face crop with the band at render's margin taken out (grey), the
    restorer's rebuild of it, and the real crop, side by side."""
    crop, band, _ = sample(frame, landmarks, config, config.margin)
    pred = rebuild(net, crop, band)
    removed = np.where(band[..., None], 0.5, crop)
    rebuilt = np.where(band[..., None], pred, crop)
    return np.round(np.concatenate([removed, rebuilt, crop], axis=1) * 255).astype(np.uint8)


@dataclass
class TorsoJob:
    """Train the project's Torso Restorer on its footage's training frames (a pipeline stage): checkpoints as it
    goes and resumes from the last one after a cancel or a kill; writes ``torso.pt``. Every ``preview_every``
    steps its progress carries a ``preview`` of the last frame with a face (held out from training)."""

    project: Project
    config: TorsoConfig = TorsoConfig()
    name: str = "Train the torso restorer"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> list[float]:
        config = self.config
        run = begin(self.project, STAGE, to_dict(config))
        if run.up_to_date:
            progress(Progress(1.0, "The torso restorer is up to date"))
            return []
        tracking = load_tracking(self.project)
        frames = trained_on(tracking["valid"].astype(bool), TrainConfig().holdout)             # [N]
        landmarks = tracking["landmarks"]
        torch.manual_seed(config.seed)
        net = UNet(config.width)
        optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
        rng = np.random.default_rng(config.seed)
        step, losses = 0, []
        key = json.dumps({"config": to_dict(config), "inputs": run.inputs}, sort_keys=True)
        checkpoint = self.project.path(TORSO_CHECKPOINT_FILE)
        saved = _load(checkpoint)
        if saved is not None and saved.get("key") == key:
            net.load_state_dict(saved["net"])
            optimiser.load_state_dict(saved["optimiser"])
            step, losses = int(saved["step"]), list(json.loads(saved["losses"]))
            rng = np.random.default_rng([config.seed, step])
            progress(Progress(step / config.steps, f"Resuming the torso restorer at step {step}"))

        def save() -> None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"key": key, "net": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                            "losses": json.dumps(losses)}, tmp)

        shown = int(np.flatnonzero(tracking["valid"])[-1])
        with FrameReader(run.footage.path) as reader:
            cache = LowerFaceCache(reader, frames, landmarks, config, cancel,
                                   lambda p: progress(Progress(step / config.steps, p.message)))
            held_out = reader.read(shown).copy()
        while step < config.steps:
            if cancel.cancelled:
                save()
                cancel.check(self.name)
            xs, ys, bands = [], [], []
            for i in rng.choice(cache.frames, size=config.batch):
                crop, band = cache.sample(int(i), float(rng.uniform(*config.margin_range)),
                                          float(rng.uniform(-config.max_turn, config.max_turn)))
                xs.append(network_input(crop, band))
                ys.append(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))))
                bands.append(torch.from_numpy(band)[None])
            x, y, band = torch.stack(xs), torch.stack(ys), torch.stack(bands).float()
            loss = (torch.abs(net(x) - y) * band).sum() / (3 * band.sum() + 1e-6)        # L1 over the band
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            losses.append(float(loss.detach()))
            if step % config.checkpoint_every == 0:
                save()
            image = None
            if step % config.preview_every == 0 or step == config.steps:
                image = preview(net, held_out, landmarks[shown], config)
            progress(Progress(step / config.steps, f"Torso restorer: step {step}/{config.steps}, band L1 "
                                                   f"{np.mean(losses[-20:]):.4f}", {"step": step, "loss": losses[-1]},
                              image))
        with atomic_path(self.project.path(TORSO_FILE)) as tmp:
            torch.save({"config": json.dumps(to_dict(config)), "net": net.state_dict()}, tmp)
        run.record([TORSO_FILE])
        checkpoint.unlink(missing_ok=True)
        return losses


def _load(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a damaged checkpoint: start again
        return None


def load_torso(project: Project) -> tuple[UNet, TorsoConfig]:
    """The project's trained restorer; ProjectError when it is missing, stale or unreadable."""
    require_current(project, STAGE)
    return _read(project)


def current_torso(project: Project) -> tuple[UNet, TorsoConfig] | None:
    """The project's trained restorer when it is current, None when it is missing or stale (a dub goes without);
    ProjectError when it is current but unreadable."""
    return _read(project) if status(project)[STAGE].current else None


def _read(project: Project) -> tuple[UNet, TorsoConfig]:
    path = project.path(TORSO_FILE)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        config = from_dict(TorsoConfig, json.loads(saved["config"]))
        net = UNet(config.width)
        net.load_state_dict(saved["net"])
    except Exception as e:  # any unreadable content, whatever torch raises
        raise damaged(path, "the torso restorer", f"{type(e).__name__}: {e}", "train it again") from e
    return net.eval(), config
