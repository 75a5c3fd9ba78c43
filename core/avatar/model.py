"""The avatar: canonical Gaussians with their triplane, attribute MLP and deformation field, as one module that
turns a frame's audio window and expression into the Gaussians ``core.render.api.rasterize`` draws (SyncTalk++'s
Dynamic Portrait Renderer, Eq. 16-20).

Stage 1 of training uses the canonical head only (``audio=None``): base attributes plus the triplane's colour
and opacity offsets. Stage 2 adds the per-frame deformation. Positions are head space (x right, y down, z away
from the camera, cm), so a frame's camera is its stabilised head pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.avatar.deform import AttributeMLP, AudioProjection, DeformationField, DeformConfig
from core.avatar.gaussians import InitConfig
from core.avatar.triplane import Triplane, TriplaneConfig
from core.render.splats import Splats

GAUSSIAN_PARAMS = ("means", "quats", "log_scales", "opacity_logits", "colors")  # per-Gaussian leaves, [N,...]


@dataclass(frozen=True)
class AvatarConfig:
    init: InitConfig = InitConfig()
    triplane: TriplaneConfig = TriplaneConfig()
    deform: DeformConfig = DeformConfig()
    audio_window: int = 8        # frames of audio features one lip feature attends over (SyncTalk's 8)


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
        self.triplane = Triplane(config.triplane)
        self.attributes = AttributeMLP(self.triplane.out_dim, config.deform)
        self.audio = AudioProjection(audio_dim, config.deform)
        self.deform = DeformationField(self.triplane.out_dim, config.deform)

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

    def forward(self, audio: Tensor | None = None, expr: Tensor | None = None) -> dict[str, Tensor]:
        """``rasterize``'s Gaussians (means, quats, scales, opacities, colors as SH [N,1,3]) for one frame.

        audio [W,D]: the frame's window of audio features, expr [E]: its expression blendshapes; both None
        for the canonical head (training stage 1).
        """
        feats = self.triplane(self.means.detach())                                    # [N,F]
        d_color, d_opacity = self.attributes(feats)                                    # [N,3], [N]
        means, quats, log_scales = self.means, F.normalize(self.quats, dim=-1), self.log_scales
        if audio is not None:
            if expr is None:
                raise ValueError("the deformation needs the expression with the audio")
            lip = self.audio(audio[None])[0]                                           # [A]
            d = self.deform(feats, self.lower, lip, expr)
            means = means + d.means                                                    # [N,3]
            quats = quat_multiply(d.quats, quats)                                      # [N,4]
            log_scales = log_scales + d.log_scales                                     # [N,3]
        return {
            "means": means,
            "quats": quats,
            "scales": torch.exp(log_scales),
            "opacities": torch.sigmoid(self.opacity_logits + d_opacity),
            "colors": (self.colors + d_color)[:, None, :],
        }
