"""The avatar: canonical Gaussians with their triplane, attribute MLP and deformation field, as one module that
turns a frame's audio window and expression into the Gaussians ``core.render.api.rasterize`` draws (SyncTalk++'s
Dynamic Portrait Renderer, Eq. 16-20).

Stage 1 of training uses the canonical head only (``audio=None``): base attributes plus the triplane's colour
and opacity offsets. Stage 2 adds the per-frame deformation. Positions are head space (x right, y down, z away
from the camera, cm), so a frame's camera is its stabilised head pose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.audio.mouth import MOUTH_DIM
from core.avatar.deform import AttributeMLP, AudioProjection, DeformationField, DeformBasis, DeformConfig
from core.avatar.gaussians import InitConfig
from core.avatar.triplane import Triplane, TriplaneConfig
from core.render.splats import Splats
from core.split import feature_blocks

GAUSSIAN_PARAMS = ("means", "quats", "log_scales", "opacity_logits", "colors")  # per-Gaussian leaves, [N,...]


@dataclass(frozen=True)
class AvatarConfig:
    init: InitConfig = InitConfig()
    triplane: TriplaneConfig = TriplaneConfig()
    deform: DeformConfig = DeformConfig()
    audio_window: int = 8        # frames whose mouth estimates one lip feature attends over (SyncTalk's 8)
    readout_context: int = 5     # the mouth readout of frame j reads the features of frames j-5 .. j+5
    readout_ridge: float = 350.0  # its ridge weight on standardised features
    readout_smooth: int = 3      # the mouth estimates are averaged over this many frames (odd; 1: not at all)
    mouth_components: int = 4    # the lip feature reads a mouth through its first principal components
    calibration_ridge: float = 10.0  # fit_calibration's ridge weight (z-scores)


@dataclass
class Canonical:
    """Everything about the Gaussians that no frame changes: the canonical head ``rasterize`` takes and the
    deformation's basis. Training recomputes it every step (it carries gradients); driving computes it once."""

    gaussians: dict[str, Tensor]  # means [N,3], quats [N,4], scales [N,3], opacities [N], colors [N,1,3]
    features: Tensor              # [N,F] triplane features
    basis: DeformBasis


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of wxyz quaternions [..., 4]: rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


class AvatarModel(nn.Module):
    """N Gaussians (raw parameters, the leaves densification resizes) and the networks that modulate them.

    ``nose_y`` splits the face for the masked attention: a Gaussian whose canonical y lies below the nose tip
    (larger y) is lower face and listens to the lip feature only.
    """

    def __init__(self, splats: Splats, nose_y: float, audio_dim: int, config: AvatarConfig = AvatarConfig()):
        super().__init__()
        self.config = config
        self.means = nn.Parameter(torch.from_numpy(splats.means.copy()))                 # [N,3] cm
        self.quats = nn.Parameter(torch.from_numpy(splats.quats.copy()))                 # [N,4] wxyz
        self.log_scales = nn.Parameter(torch.from_numpy(splats.log_scales.copy()))       # [N,3]
        self.opacity_logits = nn.Parameter(torch.from_numpy(splats.opacity_logits.copy()))  # [N]
        self.colors = nn.Parameter(torch.from_numpy(splats.sh[:, 0].copy()))             # [N,3] SH degree 0
        self.register_buffer("nose_y", torch.tensor(float(nose_y)))
        # The audio features' per-channel statistics on the training frames: the lip feature reads them
        # standardised, whatever the encoder's scale (AVE and Whisper channels differ by orders of magnitude).
        self.register_buffer("audio_mean", torch.zeros(audio_dim))   # [D]
        self.register_buffer("audio_std", torch.ones(audio_dim))     # [D]
        # The mouth readout: a ridge regression from a frame's standardised features in context to its tracked
        # mouth (z-scores), fitted in closed form on the training frames (fit_readout), or the speech model's
        # calibration (fit_calibration). A learnt projection of high-dimensional features fits a few hundred
        # frames' mouths exactly and generalises poorly, so the learnt part starts from the mouth estimate.
        self.register_buffer("readout", torch.zeros((2 * config.readout_context + 1) * audio_dim, MOUTH_DIM))
        # The lip feature reads a mouth [81] projected onto the training mouths' first principal components
        # (fit_readout), the few directions (opening, width, ...) that audio predicts and that hold most of the
        # variance: training feeds the tracked mouths, driving the readout's estimates, and both then lie in
        # the same small space, so the render follows an estimate as it follows a tracked mouth.
        self.register_buffer("mouth_projector", torch.eye(MOUTH_DIM))                # [81,81]
        self.triplane = Triplane(config.triplane)
        self.attributes = AttributeMLP(self.triplane.out_dim, config.deform)
        self.audio = AudioProjection(MOUTH_DIM, config.deform)
        self.deform = DeformationField(self.triplane.out_dim, config.deform)
        # Training reads the tracked mouth (opening and lip shape) back from the lip feature (Eq. 3's
        # reconstruction, here on the avatar's own lip feature), so that feature carries mouth geometry.
        self.lip_head = nn.Linear(config.deform.audio_dim, MOUTH_DIM)

    @classmethod
    def empty(cls, n: int, audio_dim: int, config: AvatarConfig = AvatarConfig()) -> "AvatarModel":
        """A model of ``n`` Gaussians to load a state dict into."""
        zeros = np.zeros((n, 3), np.float32)
        splats = Splats(zeros, np.zeros((n, 4)), zeros, np.zeros(n), zeros[:, None])
        return cls(splats, 0.0, audio_dim, config)

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def lower(self) -> Tensor:
        """bool [N]: the Gaussians below the nose tip."""
        return self.means.detach()[:, 1] > self.nose_y

    @property
    def audio_frames(self) -> int:
        """How many frames of audio features drive one frame: the window plus the readout's context."""
        c = self.config
        return c.audio_window + 2 * c.readout_context + c.readout_smooth - 1

    def audio_window(self, features: np.ndarray, i: int) -> np.ndarray:
        """float32 [audio_frames, D]: the features [T,D] that drive frame i, centred on it (ends repeated)."""
        first = i - self.audio_frames // 2
        return features[np.clip(np.arange(first, first + self.audio_frames), 0, len(features) - 1)]

    @property
    def audio_lookahead(self) -> int:
        """Frames past frame i whose audio features change its lip feature (``lip(audio_window(features, i))``):
        what live input waits for. The readout's last non-zero tap decides (a speech model's calibration reads the
        centre tap only)."""
        c = self.config
        taps = self.readout.view(2 * c.readout_context + 1, -1).abs().sum(1) > 0        # [2c+1]
        last = int(torch.nonzero(taps).max()) if bool(taps.any()) else c.readout_context
        return c.audio_window + c.readout_smooth - 2 + last - self.audio_frames // 2

    @property
    def mouth_centre(self) -> int:
        """Where frame i's own estimate lies in ``mouth(audio_window(features, i))``."""
        c = self.config
        return self.audio_frames // 2 - c.readout_context - (c.readout_smooth - 1) // 2

    def mouth_window(self, mouths: np.ndarray, i: int, last: int) -> np.ndarray:
        """float32 [W,81]: of per-frame mouths [T,81] (z-scores, tracked), the rows ``lip_from_mouth`` reads for
        frame i, frame i at ``mouth_centre``, clamped to frames 0..last (a training frame sees no held-out one)."""
        first = i - self.mouth_centre
        return mouths[np.clip(np.arange(first, first + self.config.audio_window), 0, last)]

    def driven_opening(self, mouths: Tensor) -> float:
        """The mouth opening (z-score) that a window of mouths [W,81] gives the lip feature for its own frame, as
        ``lip_from_mouth`` reads it (through the projector): what the render's opening should follow."""
        return float((mouths[self.mouth_centre] @ self.mouth_projector)[0])

    def mouth(self, audio: Tensor) -> Tensor:
        """Mouth estimates [W,81] (z-scores) of the window's frames from its features [audio_frames, D]."""
        x = (audio - self.audio_mean) / self.audio_std                               # [W+2c+s-1,D]
        k = 2 * self.config.readout_context + 1
        windows = x.unfold(0, k, 1).transpose(1, 2).reshape(-1, k * x.shape[1])       # [W+s-1,k*D]
        raw = windows @ self.readout                                                   # [W+s-1,81]
        return F.avg_pool1d(raw.T[None], self.config.readout_smooth, stride=1)[0].T    # [W,81]

    def fit_readout(self, features: np.ndarray, mouth: np.ndarray, frames: np.ndarray,
                    standardise: bool = True, blocks: Sequence[int] = ()) -> None:
        """Set the audio statistics, the mouth readout and the mouth projector from features [T,D] and
        standardised mouth targets [T,81] on the given training frames (ridge in its dual form: frames <<
        dimensions). ``standardise``: scale each channel by its training statistics first; features already
        normalised per clip (the ``mel`` encoder's) are read as they are, which keeps another voice's clip on
        its own scale. ``blocks``: the widths of encoders whose features lie side by side (AVE + Whisper); each
        gets its own ridge and the estimates are averaged, as in core.audio.train_ave.mouth_score, so an encoder
        trained on these very frames does not crowd out one that generalises."""
        seen = features[frames]
        if standardise:
            self.audio_mean.copy_(torch.from_numpy(seen.mean(0)))
            self.audio_std.copy_(torch.from_numpy(seen.std(0) + 1e-6))
        else:
            self.audio_mean.zero_()
            self.audio_std.fill_(1.0)
        c, d = self.config.readout_context, features.shape[1]
        parts = feature_blocks(blocks, d)
        with torch.no_grad():
            x = (torch.from_numpy(features) - self.audio_mean) / self.audio_std       # [T,D]
            idx = torch.from_numpy(np.clip(frames[:, None] + np.arange(-c, c + 1), 0, len(features) - 1))
            windows = x[idx].double()                                                  # [N,k,D]
            y = torch.from_numpy(mouth[frames]).double()                               # [N,81]
            y = y - y.mean(0)
            readout = torch.zeros(2 * c + 1, d, MOUTH_DIM, dtype=torch.float64)        # [k,D,81]
            for cols in parts:
                a = windows[:, :, cols].reshape(len(frames), -1)                       # [N,k*w]
                gram = a @ a.T + self.config.readout_ridge * torch.eye(len(frames), dtype=torch.float64)
                readout[:, cols] = (a.T @ torch.linalg.solve(gram, y)).view(2 * c + 1, -1, MOUTH_DIM)
            self.readout.copy_((readout / len(parts)).reshape(-1, MOUTH_DIM).float())
        self._fit_projector(y)

    def fit_calibration(self, tracked: np.ndarray, mouth: np.ndarray, frames: np.ndarray) -> None:
        """Calibrate the speech model's features [T,K] (speaker-normalised estimates of the lip opening and the
        mouth blendshapes, core.speech) to this subject: a ridge from the footage's own tracked values of those K
        quantities [T,K] (z-scores over the training frames) to its mouths [T,81] on the given training frames. It
        needs no sound, so silent footage calibrates too; driving reads the estimates where the tracked values
        were, at the frame itself (the readout's centre tap)."""
        self.audio_mean.zero_()
        self.audio_std.fill_(1.0)
        c, d = self.config.readout_context, tracked.shape[1]
        with torch.no_grad():
            x = torch.from_numpy(tracked[frames]).double()                             # [N,K]
            y = torch.from_numpy(mouth[frames]).double()                               # [N,81]
            x, y = x - x.mean(0), y - y.mean(0)
            gram = x.T @ x + self.config.calibration_ridge * torch.eye(d, dtype=torch.float64)
            readout = torch.zeros(2 * c + 1, d, MOUTH_DIM, dtype=torch.float64)         # [k,K,81]
            readout[c] = torch.linalg.solve(gram, x.T @ y)
            self.readout.copy_(readout.reshape(-1, MOUTH_DIM).float())
        self._fit_projector(y)

    def _fit_projector(self, centred: Tensor) -> None:
        """The mouth projector onto the first principal components of the training mouths [N,81] (centred)."""
        with torch.no_grad():
            components = torch.linalg.svd(centred, full_matrices=False).Vh[:self.config.mouth_components]  # [k,81]
            self.mouth_projector.copy_((components.T @ components).float())             # [81,81]

    def lip(self, audio: Tensor) -> Tensor:
        """The lip feature [A] of a frame from its window of audio features [audio_frames, D]."""
        return self.lip_from_mouth(self.mouth(audio))

    def lip_from_mouth(self, mouth: Tensor) -> Tensor:
        """The lip feature [A] of a frame from the mouths [W,81] (z-scores) of the W frames around it, the frame
        itself at ``mouth_centre``: estimated from audio when driving, tracked when training."""
        return self.audio((mouth @ self.mouth_projector)[None])[0]

    def forward(self, audio: Tensor | None = None, expr: Tensor | None = None) -> dict[str, Tensor]:
        """``rasterize``'s Gaussians for one frame driven by its window of audio features [W,D] and its expression
        blendshapes [E]; both None for the canonical head (training stage 1)."""
        if audio is None:
            return self.gaussians()
        if expr is None:
            raise ValueError("the deformation needs the expression with the audio")
        return self.gaussians(self.lip(audio), expr)

    def canonical(self) -> Canonical:
        """The canonical Gaussians with their triplane attributes, and the deformation's basis."""
        feats = self.triplane(self.means.detach())                                    # [N,F]
        d_color, d_opacity = self.attributes(feats)                                    # [N,3], [N]
        return Canonical({
            "means": self.means,
            "quats": F.normalize(self.quats, dim=-1),
            "scales": torch.exp(self.log_scales),
            "opacities": torch.sigmoid(self.opacity_logits + d_opacity),
            "colors": (self.colors + d_color)[:, None, :],
        }, feats, self.deform.basis(feats, self.lower))

    def gaussians(self, lip: Tensor | None = None, expr: Tensor | None = None,
                  canonical: Canonical | None = None) -> dict[str, Tensor]:
        """The Gaussians (means, quats, scales, opacities, colors as SH [N,1,3]) deformed by the lip feature [A]
        and the expression [E] (or a batch: [B,A], [B,E] give means, quats and scales with a leading [B]), or
        canonical when ``lip`` is None. ``canonical`` is ``self.canonical()``, passed when driving many frames."""
        c = canonical or self.canonical()
        if lip is None:
            return c.gaussians
        d = self.deform(c.features, self.lower, lip, expr, c.basis)
        return {
            **c.gaussians,
            "means": self.means + d.means,                                             # [(B,)N,3]
            "quats": quat_multiply(d.quats, c.gaussians["quats"]),                     # [(B,)N,4]
            "scales": torch.exp(self.log_scales + d.log_scales),                       # [(B,)N,3]
        }
