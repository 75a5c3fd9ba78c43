"""The gsplat (CUDA) backend against the CPU tile rasterizer: images and gradients agree.

The two follow the same rules except where gsplat trims each Gaussian to its own opacity-aware box
(3.33 sigma at most) and runs in float32, so they agree within 1e-3 mean absolute error.
"""

from __future__ import annotations

import pytest
import torch

from core.render import rasterize
from core.render.splats import Splats

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the gsplat backend runs only on CUDA"
)

MAE = 1e-3


def _render(params: dict, camera, backend: str, device: str):
    """Images and parameter gradients of one backend; inputs are float32 leaves on `device`."""
    leaves = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
    background = torch.tensor([0.1, 0.2, 0.3], device=device)
    out = rasterize(**leaves, camera=camera, background=background, backend=backend)
    gen = torch.Generator().manual_seed(0)
    images = [out.rgb, out.alpha, out.depth]
    weights = [torch.rand(im.shape, generator=gen).to(device) for im in images]
    sum((w * im).sum() for w, im in zip(weights, images)).backward()
    return [im.detach().cpu() for im in images], {k: v.grad.cpu() for k, v in leaves.items()}


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_gsplat_and_cpu_agree(sh_degree):
    splats = Splats.random(3000, seed=sh_degree, sh_degree=sh_degree)
    camera = splats.default_camera(128, 96)
    params = splats.activated()
    cpu_images, cpu_grads = _render(params, camera, "cpu", "cpu")
    cuda_images, cuda_grads = _render(params, camera, "cuda", "cuda")
    for name, a, b in zip(("rgb", "alpha", "depth"), cpu_images, cuda_images):
        assert a.shape == b.shape, name
        assert (a - b).abs().mean() < MAE, f"{name}: mean abs error {(a - b).abs().mean():.2e}"
    for name in cpu_grads:
        a, b = cpu_grads[name], cuda_grads[name]
        scale = a.abs().mean().clamp_min(1e-12)
        assert ((a - b).abs().mean() / scale) < 0.05, f"d {name}: relative mean abs error"


def test_auto_picks_cuda_for_cuda_tensors():
    splats = Splats.random(50, seed=1)
    params = {k: v.cuda() for k, v in splats.activated().items()}
    out = rasterize(**params, camera=splats.default_camera(32, 32))
    assert out.rgb.is_cuda and out.rgb.shape == (32, 32, 3)
