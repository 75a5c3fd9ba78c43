"""Avatar training's losses: the portrait formulation's L1 + D-SSIM of the composite, the lips weighted."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.errors import AvatarStudioError


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


Box = tuple[int, int, int, int]


def portrait_loss(render: Tensor, target: Tensor, weight: Tensor, dssim: float,
                  emphasis_boxes: list[tuple[Box, float]]) -> tuple[Tensor, Tensor]:
    """(loss, masked MSE) of render [S,S,3] against target [S,S,3] through the blend weight [S,S]: L1 and
    D-SSIM of the composite, averaged over the weighted pixels (computed in the weight's box only: outside it
    the composite is the target). The L1 of the pixels in each (x0,y0,x1,y1) box counts ``1 + extra`` times:
    the lips and the eyelids are a few percent of the face and all of lip sync and blinks."""
    emphasis = torch.ones_like(weight)                                  # [S,S]
    for (x0, y0, x1, y1), extra in emphasis_boxes:
        emphasis[y0:y1, x0:x1] += extra
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
