"""The triplane (SyncTalk++ Eq. 16-17): three orthogonal multi-resolution feature planes over the head box.

A point in head space (x right, y down, z away from the camera, centimetres) reads each plane where its two
coordinates fall, bilinearly, at every level; the features of all planes and levels side by side are what the
attribute MLP and the deformation field see. Planes instead of a dense grid keep the memory at O(R^2) per
level, and several levels let coarse planes share what fine planes would learn separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PLANE_AXES = ((0, 1), (1, 2), (0, 2))  # xy, yz, xz: the head-space axes along each plane's (width, height)


@dataclass(frozen=True)
class TriplaneConfig:
    levels: int = 4
    base_resolution: int = 32    # the coarsest level's planes are base x base
    max_resolution: int = 256    # the finest level's; the levels between are geometric
    channels: int = 4            # features per plane per level
    bounds: tuple[float, float, float, float, float, float] = (-10, 10, -13, 11, -11, 9)  # xmin..zmax, cm

    def __post_init__(self) -> None:
        if self.levels < 1 or self.channels < 1:
            raise ValueError(f"levels and channels must be at least 1, got {self.levels} and {self.channels}")
        if not 2 <= self.base_resolution <= self.max_resolution:
            raise ValueError(f"need 2 <= base_resolution <= max_resolution, got "
                             f"{self.base_resolution} and {self.max_resolution}")
        if len(self.bounds) != 6 or not all(lo < hi for lo, hi in zip(self.bounds[::2], self.bounds[1::2])):
            raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax, zmin, zmax) with min < max, got {self.bounds}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Plane side per level, coarse to fine: base * (max / base)^(l / (levels - 1))."""
        if self.levels == 1:
            return (self.base_resolution,)
        growth = (self.max_resolution / self.base_resolution) ** (1 / (self.levels - 1))
        return tuple(round(self.base_resolution * growth**level) for level in range(self.levels))


class Triplane(nn.Module):
    """Head-space positions [N,3] (cm) -> features [N, levels * 3 * channels], ordered level, plane, channel.

    Level l holds its three planes (xy, yz, xz) stacked in one parameter [3,C,R_l,R_l], so a level is a single
    ``grid_sample`` call. Positions outside ``bounds`` read the border (they are clamped), so every point has
    finite features and a gradient into the planes.
    """

    def __init__(self, config: TriplaneConfig = TriplaneConfig()):
        super().__init__()
        self.config = config
        c = config.channels
        self.planes = nn.ParameterList(
            nn.Parameter(torch.empty(3, c, r, r).uniform_(-1e-2, 1e-2)) for r in config.resolutions)  # [3,C,R,R]
        bounds = torch.tensor(config.bounds, dtype=torch.float32)  # [6]
        self.register_buffer("lo", bounds[0::2], persistent=False)  # [3]
        self.register_buffer("hi", bounds[1::2], persistent=False)  # [3]
        self.register_buffer("axes", torch.tensor(PLANE_AXES), persistent=False)  # [3,2]

    @property
    def out_dim(self) -> int:
        return self.config.levels * 3 * self.config.channels

    def normalise(self, xyz: Tensor) -> Tensor:
        """Positions [N,3] cm -> [N,3] in [-1,1] across the bounds (clamped): ``grid_sample``'s coordinates."""
        return (2 * (xyz - self.lo) / (self.hi - self.lo) - 1).clamp(-1, 1)  # [N,3]

    def forward(self, xyz: Tensor) -> Tensor:
        n = xyz.shape[0]
        uv = self.normalise(xyz)[:, self.axes].transpose(0, 1).unsqueeze(1)  # [3,1,N,2] each plane's (w, h)
        feats = [
            F.grid_sample(plane, uv, mode="bilinear", align_corners=True)  # [3,C,1,N]
            .squeeze(2).permute(2, 0, 1).reshape(n, -1)                    # [N,3*C]
            for plane in self.planes
        ]
        return torch.cat(feats, dim=1)  # [N,L*3*C]
