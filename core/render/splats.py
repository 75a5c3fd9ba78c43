"""A set of 3D Gaussians stored as the 3DGS PLY stores them, so that reading and writing is exact."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.render.camera import Camera
SH_C0 = 0.28209479177387814  # the degree-0 SH basis: colour = SH_C0 * dc + 0.5


@dataclass
class Splats:
    """N Gaussians in raw (pre-activation) form; every array float32 and C-contiguous.

    ``quats`` are (w, x, y, z), not necessarily normalised; ``log_scales`` are log linear scales;
    ``opacity_logits`` are the logit of opacity; ``sh`` holds K = (degree + 1)^2 SH coefficients per colour.
    """

    means: np.ndarray           # [N,3]
    quats: np.ndarray           # [N,4] wxyz
    log_scales: np.ndarray      # [N,3]
    opacity_logits: np.ndarray  # [N]
    sh: np.ndarray              # [N,K,3]

    def __post_init__(self) -> None:
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))
        n = len(self.means)
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"Splats.{name} has shape {getattr(self, name).shape}, expected {shape}")
        k = self.sh.shape[1] if self.sh.ndim == 3 else 0
        if self.sh.shape != (n, k, 3) or k not in (1, 4, 9, 16):
            raise ValueError(f"Splats.sh has shape {self.sh.shape}, expected ({n}, K, 3) with K in 1, 4, 9, 16")

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1

    def activated(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The keyword arguments of ``core.render.api.rasterize`` (all but the camera)."""
        means, quats, log_scales, logits, sh = (
            torch.from_numpy(a).to(device)  # shares memory on the CPU
            for a in (self.means, self.quats, self.log_scales, self.opacity_logits, self.sh))
        return {"means": means, "quats": quats, "scales": torch.exp(log_scales),
                "opacities": torch.sigmoid(logits), "colors": sh}

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The axis-aligned box of the means: (min [3], max [3]) in float64."""
        if not len(self):
            return np.zeros(3), np.zeros(3)
        return self.means.min(axis=0).astype(np.float64), self.means.max(axis=0).astype(np.float64)

    def default_camera(self, width: int, height: int, fov_y_deg: float = 50.0) -> Camera:
        """A Camera on the -z side of the bounds looking along +z at their centre (world up -y), fitting them."""
        lo, hi = self.bounds()
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        tan_y = math.tan(math.radians(fov_y_deg) / 2)
        tan_x = tan_y * width / height
        # the front face of the box must fit in both directions; the box's own depth adds half[2]
        distance = max(half[0] / tan_x, half[1] / tan_y, 1e-3) + half[2]
        eye = centre - np.array([0.0, 0.0, distance * 1.05])
        return Camera.look_at(eye, centre, np.array([0.0, -1.0, 0.0]), fov_y_deg, width, height)

    @classmethod
    def random(cls, n: int, seed: int, sh_degree: int = 0, extent: float = 1.0) -> Splats:
        """``n`` Gaussians with means in the cube [-extent, extent]^3, for tests and benchmarks.

        With ``default_camera`` at 512x512 each covers a few to tens of pixels (3-sigma ellipse of about
        10-120 px; scales log-uniform in 0.2-1.2% of ``extent``, a sigma of 0.4-2 px);
        opacities are uniform in 0.1-0.9; base colours uniform in [0, 1], higher SH bands small.
        """
        rng = np.random.default_rng(seed)
        k = (sh_degree + 1) ** 2
        sh = np.empty((n, k, 3), np.float32)
        sh[:, 0] = (rng.uniform(0.0, 1.0, (n, 3)) - 0.5) / SH_C0
        sh[:, 1:] = rng.normal(0.0, 0.15, (n, k - 1, 3))
        opacity = rng.uniform(0.1, 0.9, n)
        return cls(
            means=rng.uniform(-extent, extent, (n, 3)),
            quats=rng.normal(size=(n, 4)),
            log_scales=rng.uniform(np.log(0.002 * extent), np.log(0.012 * extent), (n, 3)),
            opacity_logits=np.log(opacity / (1 - opacity)),
            sh=sh,
        )
