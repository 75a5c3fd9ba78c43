"""`rasterize`: one functional entry point for every differentiable Gaussian renderer.

Shaped after gsplat's `rasterization` for a single camera: Gaussians in, RGB, alpha and accumulated
depth images out, differentiable with respect to every Gaussian parameter. Backends: "cpu" (our tile
rasterizer, core.render.cpu) and "cuda" (gsplat, imported only when CUDA is available).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.render.camera import Camera

BACKENDS = ("cpu", "cuda")


@dataclass
class RenderOutput:
    """One rendered view; depth is sum(z_i alpha_i T_i), not divided by alpha (gsplat mode "D")."""

    rgb: Tensor  # [H, W, 3]
    alpha: Tensor  # [H, W, 1]
    depth: Tensor  # [H, W, 1]


def available_backends() -> tuple[str, ...]:
    """The backends this machine can run."""
    return BACKENDS if torch.cuda.is_available() else ("cpu",)


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    camera: Camera,
    background: Tensor | None = None,
    backend: str = "auto",
) -> RenderOutput:
    """Render N Gaussians seen by `camera` over `background` (black when None).

    means [N, 3] world; quats [N, 4] (w, x, y, z), any norm; scales [N, 3] linear; opacities [N] in
    [0, 1]; colors [N, 3] RGB or [N, K, 3] SH coefficients, K = (degree + 1)^2 <= 16;
    background [3]. All tensors share one float dtype and device. backend: "auto" (cuda when the
    tensors are on a CUDA device, else cpu), "cpu" or "cuda"; outputs live on the inputs' device.
    """
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose 'auto' or one of {BACKENDS}")
    if backend == "cuda" and not torch.cuda.is_available():
        raise ValueError("render backend 'cuda' needs a CUDA device; this machine has none")
    _check_inputs(means, quats, scales, opacities, colors)
    if background is None:
        background = torch.zeros(3, dtype=means.dtype, device=means.device)  # [3]
    elif background.shape != (3,):
        raise ValueError(f"background must have shape [3], got {list(background.shape)}")
    background = background.to(means)  # [3]
    if backend == "auto":
        backend = "cuda" if means.is_cuda and torch.cuda.is_available() else "cpu"
    if backend == "cuda":
        from core.render.cuda import rasterize_cuda

        device = means.device if means.is_cuda else torch.device("cuda")
        args = [t.to(device) for t in (means, quats, scales, opacities, colors, background)]
        rgb, alpha, depth = rasterize_cuda(*args[:5], camera, args[5])
    else:
        from core.render.cpu import rasterize_cpu

        args = [t.cpu() for t in (means, quats, scales, opacities, colors, background)]
        rgb, alpha, depth = rasterize_cpu(*args[:5], camera, args[5])
    return RenderOutput(rgb.to(means.device), alpha.to(means.device), depth.to(means.device))


def _check_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor) -> None:
    """Check shapes, dtype and device; a ValueError names the offending tensor."""
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape [N, 3], got {list(means.shape)}")
    n = means.shape[0]
    expected = {"quats": (quats, (n, 4)), "scales": (scales, (n, 3)), "opacities": (opacities, (n,))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(tensor.shape)}")
    if colors.dim() == 2:
        ok = tuple(colors.shape) == (n, 3)
    else:
        ok = colors.dim() == 3 and colors.shape[0] == n and colors.shape[1] in (1, 4, 9, 16)
        ok = ok and colors.shape[2] == 3
    if not ok:
        raise ValueError(
            f"colors must have shape [N, 3] or [N, K, 3] with K in 1, 4, 9, 16 (N = {n}), "
            f"got {list(colors.shape)}"
        )
    if not means.is_floating_point():
        raise ValueError(f"means must be a float tensor, got {means.dtype}")
    for name, tensor in {"quats": quats, "scales": scales, "opacities": opacities, "colors": colors}.items():
        if tensor.dtype != means.dtype or tensor.device != means.device:
            raise ValueError(
                f"{name} is {tensor.dtype} on {tensor.device}; means is {means.dtype} on {means.device}"
            )
