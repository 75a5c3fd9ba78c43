"""Densification as a strategy object (gsplat's DefaultStrategy shape): the trainer calls it after each backward
pass and after each optimiser step; it owns its statistics and resizes the per-Gaussian parameters and their Adam
moments in place."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from core.avatar.config import TrainConfig
from core.avatar.model import GAUSSIAN_PARAMS, AvatarModel
from core.render.camera import Camera
from core.render.cpu import quat_to_rotmat


class DensifyStrategy:
    """Budgeted densification: prune the transparent, grow by the largest screen-space positional gradients."""

    def __init__(self, config: TrainConfig, n: int):
        self.config = config
        self.grad_sum = torch.zeros(n)      # [N] accumulated screen-space positional gradient
        self.grad_count = torch.zeros(n)    # [N] steps each Gaussian was seen

    def step_post_backward(self, model: AvatarModel, camera: Camera) -> None:
        """Add each Gaussian's positional gradient in screen pixels: |d loss / d xy_camera| * z / f."""
        grad = model.means.grad
        if grad is None:
            return
        view = torch.tensor(camera.view, dtype=torch.float32)                         # [4,4]
        with torch.no_grad():
            g_cam = grad @ view[:3, :3].T                                       # [N,3]
            z = (model.means @ view[:3, :3].T + view[:3, 3])[:, 2].clamp_min(1e-3)  # [N]
            g_px = g_cam[:, :2].norm(dim=1) * z / camera.fx                      # [N]
            seen = g_px > 0
            self.grad_sum += g_px
            self.grad_count += seen

    def step_post_step(self, model: AvatarModel, optimizer: torch.optim.Optimizer, step: int) -> None:
        """After optimiser step ``step`` (counted from 1): densify every ``densify_every`` steps until
        ``densify_until`` of stage 1."""
        c = self.config
        if step % c.densify_every == 0 and step <= c.densify_until * c.stage1_steps:
            self.densify(model, optimizer, step)

    def densify(self, model: AvatarModel, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Prune the transparent, then grow by the largest average screen-space gradients within the budget:
        split the large chosen Gaussians in two (each 1/1.6 the scale, sampled inside the parent), clone the
        small ones. An equivalent of 3DGS's strategy with a budget instead of a gradient threshold, so the
        count stays within ``max_gaussians`` on any footage."""
        c, m = self.config, model
        with torch.no_grad():
            n = len(m)
            prune = torch.sigmoid(m.opacity_logits) < c.prune_opacity                   # [N]
            mean_grad = torch.where(self.grad_count > 0, self.grad_sum / self.grad_count.clamp_min(1), 0.0)
            mean_grad[prune] = 0
            room = c.max_gaussians - (n - int(prune.sum()))
            grow = max(0, min(room, int(c.densify_grow * n), int((mean_grad > 0).sum())))
            chosen = torch.zeros(n, dtype=torch.bool)
            chosen[torch.argsort(mean_grad, descending=True, stable=True)[:grow]] = True
            big = m.log_scales.exp().max(dim=1).values > c.split_scale                  # [N]
            split, clone = chosen & big, chosen & ~big
            keep = ~prune & ~split

            generator = torch.Generator().manual_seed(c.seed * 100_003 + step)
            idx = torch.nonzero(split).squeeze(1)                                          # [K]
            scales = m.log_scales[idx].exp()                                              # [K,3]
            rotm = quat_to_rotmat(m.quats[idx])                                           # [K,3,3]
            samples = torch.randn(2, len(idx), 3, generator=generator) * scales           # [2,K,3]
            split_means = (m.means[idx] + torch.einsum("kij,skj->ski", rotm, samples)).reshape(-1, 3)  # [2K,3]
            new = {
                "means": torch.cat([m.means[clone], split_means]),
                "quats": torch.cat([m.quats[clone], m.quats[idx].repeat(2, 1)]),
                "log_scales": torch.cat([m.log_scales[clone], (m.log_scales[idx] - np.log(1.6)).repeat(2, 1)]),
                "opacity_logits": torch.cat([m.opacity_logits[clone], m.opacity_logits[idx].repeat(2)]),
                "colors": torch.cat([m.colors[clone], m.colors[idx].repeat(2, 1)]),
            }
            for name in GAUSSIAN_PARAMS:
                _resize(model, optimizer, name, keep, new[name])
            self.grad_sum = torch.zeros(len(m))
            self.grad_count = torch.zeros(len(m))

    def state_dict(self) -> dict[str, Tensor]:
        return {"grad_sum": self.grad_sum, "grad_count": self.grad_count}

    def load_state_dict(self, state: dict) -> None:
        self.grad_sum, self.grad_count = state["grad_sum"], state["grad_count"]


def _resize(model: AvatarModel, optimizer: torch.optim.Optimizer, name: str, keep: Tensor, extra: Tensor) -> None:
    """Replace Gaussian parameter ``name`` by its kept rows [K,...] plus ``extra`` [M,...]; its Adam
    moments follow the rows, the new rows starting at zero."""
    old = getattr(model, name)
    param = torch.nn.Parameter(torch.cat([old.detach()[keep], extra]))
    group = next(g for g in optimizer.param_groups if g.get("name") == name)
    state = optimizer.state.pop(old, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key] = torch.cat([state[key][keep], torch.zeros_like(extra)])
    group["params"] = [param]
    if state:
        optimizer.state[param] = state
    setattr(model, name, param)
