"""The CUDA backend: gsplat's `rasterization` for one camera, in "RGB+D" classic mode.

Imported only when torch.cuda.is_available(): on a CPU-only machine gsplat tries a JIT CUDA build.
gsplat's kernels run in float32; results come back in the inputs' dtype.
"""

from __future__ import annotations

import math

import torch
from gsplat import rasterization
from torch import Tensor

from core.render.camera import Camera


def rasterize_cuda(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    camera: Camera,
    background: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1]; inputs as `api.rasterize`, on one CUDA device.

    means [N, 3], quats [N, 4], scales [N, 3], opacities [N], colors [N, 3] or [N, K, 3], background [3].
    """
    dtype, device = means.dtype, means.device
    sh_degree = None if colors.dim() == 2 else math.isqrt(colors.shape[1]) - 1
    f32 = [t.float() for t in (means, quats, scales, opacities, colors, background)]
    view = torch.tensor(camera.view, dtype=torch.float32, device=device)[None]  # [1, 4, 4]
    K = torch.tensor(camera.K, dtype=torch.float32, device=device)[None]  # [1, 3, 3]
    image, alpha, _ = rasterization(
        *f32[:5], view, K, camera.width, camera.height,
        near_plane=0.01, eps2d=0.3, sh_degree=sh_degree, backgrounds=f32[5][None],
        render_mode="RGB+D", rasterize_mode="classic",
    )  # fmt: skip  image [1, H, W, 4], alpha [1, H, W, 1]
    return image[0, ..., :3].to(dtype), alpha[0].to(dtype), image[0, ..., 3:].to(dtype)
