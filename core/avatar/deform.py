"""The avatar's networks on top of the triplane: canonical attributes (SyncTalk++ Eq. 18), the per-frame
deformation (Eq. 19-20) with the Face-Sync Controller's facial-aware masked attention (Eq. 6), and the
projection of per-frame audio features to the lip feature that drives it.

The mask is what keeps speech and expression apart: a Gaussian below the nose tip sees only the lip feature,
one above it only the expression (brows and blinks), so audio cannot make the brows twitch and a blink cannot
move the mouth. Every offset network ends in a zero-initialised layer, so the avatar starts exactly at its
canonical Gaussians and learns departures from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.tracking.landmarks import EXPRESSION_BLENDSHAPES



@dataclass(frozen=True)
class DeformConfig:
    hidden: int = 64      # width of every MLP
    audio_dim: int = 32   # the lip feature, after projection
    expr_dim: int = len(EXPRESSION_BLENDSHAPES)


@dataclass
class Deformation:
    """Per-frame offsets from the canonical Gaussians; a leading [B] when the frames came batched."""

    means: Tensor       # [(B,) N, 3] cm, added to the canonical means
    quats: Tensor       # [(B,) N, 4] unit wxyz rotation, composed onto the canonical one: dq * q
    log_scales: Tensor  # [(B,) N, 3] added to the canonical log scales


@dataclass
class DeformBasis:
    """The deformation's per-Gaussian terms that no frame changes (``DeformationField.basis``): computed once
    per frame in training (they carry gradients), once per avatar when driving."""

    gates: Tensor   # [N,A+E] the attention gates: the lip channels' exactly 0 above the nose, the
                    # expression channels' exactly 0 below it
    hidden: Tensor  # [N,H] the first layer's response to the triplane features, bias included


def _zero_last(mlp: nn.Sequential) -> nn.Sequential:
    """``mlp`` with its last Linear zeroed, so its output starts at exactly 0 whatever the input."""
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


class AudioProjection(nn.Module):
    """Audio features -> the lip feature: [B,D_in] -> [B,audio_dim] per frame, or [B,W,D_in] -> [B,audio_dim]
    for a window of W neighbouring frames blended by a learnt attention over time (SyncTalk's AudioAttNet),
    which smooths the jitter of per-frame features. D_in is the encoder's (512 AVE, 384 Whisper, 896 both).

    The attention is convolutional, so the window length is free; zero padding at its ends lets it tell
    the centre from the edges.
    """

    def __init__(self, in_dim: int, config: DeformConfig = DeformConfig()):
        super().__init__()
        a = config.audio_dim
        self.frame = nn.Sequential(nn.Linear(in_dim, config.hidden), nn.LeakyReLU(0.02), nn.Linear(config.hidden, a))
        self.attention = nn.Sequential(
            nn.Conv1d(a, 16, 3, padding=1), nn.LeakyReLU(0.02), nn.Conv1d(16, 1, 3, padding=1))

    def forward(self, feats: Tensor) -> Tensor:
        lip = self.frame(feats)                                      # [B,A] or [B,W,A]
        if feats.dim() == 2:
            return lip
        weights = self.attention(lip.transpose(1, 2)).squeeze(1)      # [B,W]
        return torch.einsum("bw,bwa->ba", weights.softmax(dim=1), lip)  # [B,A]


class AttributeMLP(nn.Module):
    """Triplane features [N,F] -> canonical attribute offsets (Eq. 18): colour [N,3], added to the base
    colour (the SH degree-0 coefficients), and opacity logit [N], added to the base logit. Zero at init."""

    def __init__(self, feature_dim: int, config: DeformConfig = DeformConfig()):
        super().__init__()
        self.net = _zero_last(nn.Sequential(nn.Linear(feature_dim, config.hidden), nn.ReLU(),
                                            nn.Linear(config.hidden, 4)))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(features)    # [N,4]
        return out[:, :3], out[:, 3]  # [N,3], [N]


class DeformationField(nn.Module):
    """Per-Gaussian offsets for one frame or a batch of frames (Eq. 19-20), from the Gaussians' triplane
    features [N,F], their region ``lower`` bool [N] (True below the nose tip), the lip feature [A] or [B,A]
    and the expression [E] or [B,E] (``EXPRESSION_BLENDSHAPES`` coefficients).

    Facial-aware masked attention (Eq. 6): a gate in (0,1) per Gaussian and channel, read from its features,
    scales the lip and expression channels; lower-face Gaussians then keep only the gated lip channels and
    upper-face ones only the gated expression channels, the rest exactly zero. The rotation is predicted as
    4 numbers added to the identity (1,0,0,0) and normalised, so a zero prediction is exactly no rotation.
    """

    def __init__(self, feature_dim: int, config: DeformConfig = DeformConfig()):
        super().__init__()
        a, e, h = config.audio_dim, config.expr_dim, config.hidden
        self.audio_dim = a
        self.gate = nn.Sequential(nn.Linear(feature_dim, h), nn.ReLU(), nn.Linear(h, a + e))
        self.net = _zero_last(nn.Sequential(
            nn.Linear(feature_dim + a + e, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 3 + 4 + 3)))
        self.register_buffer("identity", torch.tensor([1.0, 0.0, 0.0, 0.0]), persistent=False)  # [4]

    def basis(self, features: Tensor, lower: Tensor) -> DeformBasis:
        """The frame-independent terms for Gaussians with triplane features [N,F] and regions ``lower`` [N]."""
        gates = torch.sigmoid(self.gate(features))                                  # [N,A+E]
        below = lower[:, None].to(gates.dtype)                                      # [N,1] 1 below the nose
        mask = torch.cat([below.expand(-1, self.audio_dim), 1.0 - below.expand(-1, gates.shape[1] - self.audio_dim)],
                         dim=1)                                                     # [N,A+E]
        first = self.net[0]
        hidden = F.linear(features, first.weight[:, :features.shape[-1]], first.bias)  # [N,H]
        return DeformBasis(gates * mask, hidden)

    def forward(self, features: Tensor, lower: Tensor, lip: Tensor, expr: Tensor,
                basis: DeformBasis | None = None) -> Deformation:
        """``basis`` (from ``basis(features, lower)``) saves recomputing it when driving many frames."""
        batched = lip.dim() == 2
        lip, expr = lip.reshape(-1, lip.shape[-1]), expr.reshape(-1, expr.shape[-1])  # [B,A], [B,E]
        if lip.shape[0] != expr.shape[0]:
            raise ValueError(f"lip and expression must have the same frames, got {lip.shape[0]} and {expr.shape[0]}")
        basis = basis or self.basis(features, lower)
        # The first layer over [features, gated lip, gated expression], split by input: the features' share
        # is the basis; the masked gates make each region see only its own channels.
        attended = basis.gates * torch.cat([lip, expr], dim=1)[:, None]             # [B,N,A+E]
        x = basis.hidden + F.linear(attended, self.net[0].weight[:, features.shape[-1]:])  # [B,N,H]
        out = self.net[1:](x)                                                       # [B,N,10]
        if not batched:
            out = out[0]                                                            # [N,10]
        d_means, d_quats, d_log_scales = out.split([3, 4, 3], dim=-1)               # [..,3], [..,4], [..,3]
        return Deformation(d_means, F.normalize(d_quats + self.identity, dim=-1), d_log_scales)
