"""The avatar's deformation baked for real time: per-Gaussian bases over the few numbers that drive a frame, so a
frame's Gaussians cost one matrix product instead of the deformation network over every Gaussian.

What drives a frame is low-dimensional: the lip feature [A] varies along a few directions (its principal
components over the footage's frames), and the expression has E blendshapes. Each Gaussian's offsets (means [3],
rotation [4], log-scales [3]) are fitted by least squares as a linear function of those inputs over samples of
the footage's frames, driven both by their tracked mouths and by their audio, with expressions mixed between
frames so that blinks and brows vary apart from the mouth. (Adding each input's square fitted the samples better
and held-out frames worse.) Gaussians that cover less than ``min_coverage`` of a pixel (their summed blending
weight over the image) on every sample frame are left out: on the May avatar a third of them, for 0.06 dB of
held-out face PSNR. The exact network stays for exports (dubs, evaluation); the baked one serves the Viewport and
live mode, and its whole cost in face PSNR is measured by benchmarks/live.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.avatar.model import AvatarModel, Canonical, quat_multiply
from core.jobs import CancelToken
from core.render.api import rasterize
from core.render.camera import Camera
from core.render.splats import SH_C0


@dataclass(frozen=True)
class BakeConfig:
    lip_components: int = 8      # the lip feature's principal directions the bases span
    samples: int = 384           # frames the exact network drives for the fit, drawn from the given ones
    ridge: float = 1e-3          # least squares' ridge, relative to the design's mean energy
    min_coverage: float = 0.2    # pixels' worth of blending weight a Gaussian must reach on some sample frame
    coverage_frames: int = 12    # sample frames its coverage is measured on
    batch: int = 16              # frames through the exact network at once while fitting
    seed: int = 0


@dataclass
class BakedDeformation:
    """Frame-independent Gaussians and the bases of their per-frame offsets."""

    canonical: dict[str, Tensor]  # rasterize's canonical Gaussians (means [N,3], quats [N,4], scales [N,3], ...),
                                  # those that cover enough of some sample frame
    log_scales: Tensor            # [N,3] the canonical log-scales
    lip_mean: Tensor              # [A]
    lip_axes: Tensor              # [A,L] principal directions of the lip feature
    expr_mean: Tensor             # [E]
    weights: Tensor               # [1+L+E, N*10] offsets = [1, lip components, expression] @ weights
    kept: Tensor                  # [N] int64: the model's Gaussians these are

    def inputs(self, lip: Tensor, expr: Tensor) -> Tensor:
        """[(B,) 1+L+E] the design rows of lip features [(B,) A] and expressions [(B,) E]."""
        x = torch.cat([(lip - self.lip_mean) @ self.lip_axes, expr - self.expr_mean], dim=-1)   # [(B,) L+E]
        return torch.cat([x.new_ones(x.shape[:-1] + (1,)), x], dim=-1)

    def gaussians(self, lip: Tensor, expr: Tensor) -> dict[str, Tensor]:
        """``rasterize``'s Gaussians for the lip feature [A] and expression [E], as AvatarModel.gaussians gives
        them, up to the bake's fit."""
        out = (self.inputs(lip.float(), expr.float()) @ self.weights).view(-1, 10)      # [N,10]
        c = self.canonical
        return {**c, "means": c["means"] + out[:, :3],
                "quats": quat_multiply(F.normalize(out[:, 3:7], dim=-1), c["quats"]),
                "scales": torch.exp(self.log_scales + out[:, 7:])}


def coverage(gaussians: dict[str, Tensor], camera: Camera) -> Tensor:
    """[N]: each Gaussian's blending weight summed over the image (alpha x transmittance, in pixels), read off the
    rasterizer's gradient of the image's sum with respect to the colours."""
    g = {k: v.detach().clone() for k, v in gaussians.items()}
    g["colors"].requires_grad_(True)
    with torch.enable_grad():
        rasterize(**g, camera=camera, background=torch.zeros(3)).rgb.sum().backward()
    return g["colors"].grad[:, 0].sum(1) / (3 * SH_C0)                                      # d rgb / d c0 = SH_C0


def bake(model: AvatarModel, canonical: Canonical, lips: np.ndarray, exprs: np.ndarray,
         config: BakeConfig = BakeConfig(), cancel: CancelToken | None = None,
         seen: list[tuple[dict[str, Tensor], Camera]] = ()) -> BakedDeformation:
    """Fit the bases on the lip features [S,A] and expressions [T,E] of the footage's frames: ``config.samples``
    lips drawn from them, each with a mix of two random frames' expressions. ``seen``: frames' Gaussians and
    cameras on which to measure each Gaussian's coverage (none: every Gaussian is kept)."""
    rng = np.random.default_rng(config.seed)
    lips = np.asarray(lips, np.float32)
    exprs = np.asarray(exprs, np.float32)
    pick = rng.integers(0, len(exprs), size=(config.samples, 2))
    w = rng.random((config.samples, 1), np.float32)
    sample_expr = w * exprs[pick[:, 0]] + (1 - w) * exprs[pick[:, 1]]                   # [M,E]
    sample_lip = lips[rng.integers(0, len(lips), size=config.samples)]                 # [M,A]

    lip_mean = lips.mean(0)
    axes = np.linalg.svd(lips - lip_mean, full_matrices=False)[2][:config.lip_components].T  # [A,L]
    baked = BakedDeformation(
        canonical={k: v.detach() for k, v in canonical.gaussians.items()},
        log_scales=model.log_scales.detach().clone(),
        lip_mean=torch.from_numpy(lip_mean), lip_axes=torch.from_numpy(np.ascontiguousarray(axes, np.float32)),
        expr_mean=torch.from_numpy(exprs.mean(0)), weights=torch.zeros(0), kept=torch.arange(len(model)))

    n = len(model)
    gram, moment = None, None
    with torch.inference_mode():
        for start in range(0, len(sample_lip), config.batch):
            if cancel is not None:
                cancel.check("Baking the avatar")
            lip = torch.from_numpy(sample_lip[start:start + config.batch])               # [B,A]
            expr = torch.from_numpy(sample_expr[start:start + config.batch])             # [B,E]
            d = model.deform(canonical.features, model.lower, lip, expr, canonical.basis)
            y = torch.cat([d.means, d.quats, d.log_scales], dim=-1).reshape(len(lip), n * 10).double()  # [B,N*10]
            x = baked.inputs(lip, expr).double()                                          # [B,1+L+E]
            gram = x.T @ x if gram is None else gram + x.T @ x
            moment = x.T @ y if moment is None else moment + x.T @ y
        ridge = config.ridge * torch.diagonal(gram)[1:].mean() * torch.eye(len(gram), dtype=torch.float64)
        ridge[0, 0] = 0.0                                                                 # never shrink the constant
        weights = torch.linalg.solve(gram + ridge, moment).float()                        # [1+L+E,N*10]
    keep = torch.ones(n, dtype=torch.bool)
    if seen:
        covered = torch.stack([coverage(g, camera) for g, camera in seen]).amax(0)       # [N]
        keep = covered >= config.min_coverage
    baked.canonical = {k: v[keep] for k, v in baked.canonical.items()}
    baked.log_scales = baked.log_scales[keep]
    baked.weights = weights.view(len(weights), n, 10)[:, keep].reshape(len(weights), -1).contiguous()
    baked.kept = torch.nonzero(keep).squeeze(1)
    return baked
