"""The CPU backend: EWA projection and SH colours in torch autograd, tile compositing in numba.

Projection follows gsplat's "classic" fused projection (eps2d = 0.3, near plane 0.01, the clamped
perspective Jacobian). Compositing runs in `core.render._kernels` behind `_Composite`, a
torch.autograd.Function whose backward hands dL/d(mean2d, conic, opacity, colour, depth) back to
autograd, which carries them through the projection to the Gaussians' parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from core.render import _kernels
from core.render.camera import Camera

NEAR, FAR = _kernels.NEAR, _kernels.FAR
EPS2D = _kernels.EPS2D  # gsplat's anti-aliasing low-pass added to every 2D covariance


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] from quaternions [N, 4] (w, x, y, z), normalised first."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)  # 4 x [N]
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def sh_to_rgb(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """RGB [N, 3] from SH coefficients [N, K, 3] (K = 1, 4, 9, 16) seen along dirs [N, 3].

    gsplat's real SH basis (the 3DGS one), then `clamp_min(colour + 0.5, 0)` as gsplat does.
    """
    k = coeffs.shape[1]
    c = _kernels.SH  # the basis' constants, shared with the forward-only kernel
    basis = [torch.full_like(dirs[:, 0], c[0])]  # K x [N]
    if k > 1:
        x, y, z = torch.nn.functional.normalize(dirs, dim=-1).unbind(-1)  # 3 x [N]
        basis += [-c[1] * y, c[1] * z, -c[1] * x]
    if k > 4:
        xx, yy, zz = x * x, y * y, z * z  # 3 x [N]
        basis += [
            c[2] * x * y,
            -c[2] * y * z,
            c[3] * (2 * zz - xx - yy),
            -c[2] * x * z,
            c[4] * (xx - yy),
        ]
    if k > 9:
        basis += [
            -c[5] * y * (3 * xx - yy),
            c[6] * x * y * z,
            -c[7] * y * (4 * zz - xx - yy),
            c[8] * z * (2 * zz - 3 * xx - 3 * yy),
            -c[7] * x * (4 * zz - xx - yy),
            c[9] * z * (xx - yy),
            -c[5] * x * (xx - 3 * yy),
        ]
    rgb = (torch.stack(basis, dim=-1)[:, :, None] * coeffs).sum(dim=1)  # [N, 3]
    return torch.clamp_min(rgb + 0.5, 0.0)


def project(
    means: Tensor, quats: Tensor, scales: Tensor, camera: Camera
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA splatting of N Gaussians into the camera.

    Returns mean2d [N, 2] px, cov2d [N, 2, 2] (low-pass included), depth [N] (camera z) and
    visible [N] (near <= z <= far and the 3-sigma box, radius ceil(3 sqrt(largest eigenvalue)),
    touches the image). Culled Gaussians get finite stand-ins
    so that no NaN reaches autograd.
    """
    view = torch.tensor(camera.view, dtype=means.dtype)  # [4, 4]
    rot, trans = view[:3, :3], view[:3, 3]  # [3, 3], [3]
    mean_c = means @ rot.T + trans  # [N, 3]
    x, y, z = mean_c.unbind(-1)  # 3 x [N]
    in_front = (z >= NEAR) & (z <= FAR)  # [N]
    z = torch.where(in_front, z, torch.ones_like(z))  # [N]

    m = rot @ (quat_to_rotmat(quats) * scales[:, None, :])  # [N, 3, 3] camera-space R S
    cov_c = m @ m.transpose(1, 2)  # [N, 3, 3]

    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    w, h = camera.width, camera.height
    lim_x_pos = (w - cx) / fx + 0.3 * (0.5 * w / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * w / fx)
    lim_y_pos = (h - cy) / fy + 0.3 * (0.5 * h / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * h / fy)
    tx = z * torch.clamp(x / z, -lim_x_neg, lim_x_pos)  # [N]
    ty = z * torch.clamp(y / z, -lim_y_neg, lim_y_pos)  # [N]
    zero = torch.zeros_like(z)  # [N]
    jac = torch.stack(
        [fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(-1, 2, 3)  # [N, 2, 3]
    cov2d = jac @ cov_c @ jac.transpose(1, 2)  # [N, 2, 2]
    cov2d = cov2d + EPS2D * torch.eye(2, dtype=means.dtype)  # [N, 2, 2]
    mean2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [N, 2]

    with torch.no_grad():
        a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]  # 3 x [N]
        mid = 0.5 * (a + c)  # [N]
        lam = mid + torch.sqrt(torch.clamp_min(mid * mid - (a * c - b * b), 0.0))  # [N]
        radius = torch.ceil(3.0 * torch.sqrt(lam))  # [N]
        u, v = mean2d.unbind(-1)  # 2 x [N]
        on_screen = (u + radius > 0) & (u - radius < w) & (v + radius > 0) & (v - radius < h)
        visible = in_front & on_screen & torch.isfinite(cov2d).all(-1).all(-1)  # [N]
    return mean2d, cov2d, z, visible


def _conics(cov2d: Tensor, visible: Tensor) -> Tensor:
    """Inverse 2D covariances as (a, b, c) [N, 3]; culled Gaussians get the identity."""
    eye = torch.eye(2, dtype=cov2d.dtype).expand_as(cov2d)  # [N, 2, 2]
    cov = torch.where(visible[:, None, None], cov2d, eye)  # [N, 2, 2]
    a, b, c = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]  # 3 x [N]
    det = a * c - b * b  # [N]
    return torch.stack([c / det, -b / det, a / det], dim=-1)  # [N, 3]


def _tile_grid(camera: Camera) -> tuple[int, int]:
    """Tiles across and down the image."""
    return (camera.width + _kernels.TILE - 1) // _kernels.TILE, (camera.height + _kernels.TILE - 1) // _kernels.TILE


def _tile_lists(
    mean2d: Tensor, cov2d: Tensor, depth: Tensor, opacities: Tensor, visible: Tensor, camera: Camera
) -> tuple[np.ndarray, np.ndarray]:
    """Depth-sorted per-tile lists (offsets [T + 1], ids [M]) of the visible Gaussians.

    A Gaussian goes to every tile meeting its opacity-aware box, the region where
    opacity * exp(-sigma) >= 1/255 could hold; outside it the pixel rule skips the Gaussian anyway,
    so these lists give exactly the untruncated per-pixel sum.
    """
    tiles_x, tiles_y = _tile_grid(camera)
    with torch.no_grad():
        opac = opacities.detach().to(torch.float64)  # [N]
        bright = visible & (opac >= _kernels.ALPHA_MIN)  # [N]
        reach = torch.sqrt(2.0 * torch.log(torch.clamp_min(opac, _kernels.ALPHA_MIN) * 255.0))
        var = torch.diagonal(cov2d.detach(), dim1=1, dim2=2).to(torch.float64)  # [N, 2]
        ext = reach[:, None] * torch.sqrt(var) * (1 + 1e-6) + 1e-3  # [N, 2] px
        centre = mean2d.detach().to(torch.float64)  # [N, 2]
        lo = torch.floor((centre - ext) / _kernels.TILE)  # [N, 2]
        hi = torch.floor((centre + ext) / _kernels.TILE) + 1  # [N, 2]
        limit = torch.tensor([tiles_x, tiles_y], dtype=torch.float64)  # [2]
        lo = torch.minimum(torch.clamp_min(torch.nan_to_num(lo), 0), limit)  # [N, 2]
        hi = torch.minimum(torch.clamp_min(torch.nan_to_num(hi), 0), limit)  # [N, 2]
        rects = torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], -1).to(torch.int64)  # [N, 4]
        ids = torch.nonzero(bright).squeeze(1)  # [V]
        order = ids[torch.argsort(depth.detach()[ids], stable=True)]  # [V]
    return _kernels.bin_tiles(order.numpy(), rects.numpy(), tiles_x, tiles_x * tiles_y)


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of projected Gaussians over per-tile lists, with its backward."""

    @staticmethod
    def forward(ctx, mean2d, conics, opacities, feats, background, offsets, ids, width, height):
        # mean2d [N, 2], conics [N, 3], opacities [N], feats [N, 4] (rgb, depth), background [3]
        # offsets [T + 1] int64, ids [M] int32: depth-sorted per-tile lists
        dtype = mean2d.dtype
        img = torch.empty(height, width, _kernels.N_FEAT, dtype=dtype)  # [H, W, 4]
        t_final = torch.empty(height, width, dtype=dtype)  # [H, W]
        n_used = torch.empty(height, width, dtype=torch.int32)  # [H, W]
        args = [t.detach().contiguous() for t in (mean2d, conics, opacities, feats, background)]
        _kernels.composite_forward(
            *(t.numpy() for t in args), offsets.numpy(), ids.numpy(), width, height,
            img.numpy(), t_final.numpy(), n_used.numpy(),
        )  # fmt: skip
        ctx.save_for_backward(*args, offsets, ids, t_final, n_used)
        ctx.size = (width, height)
        alpha = (1.0 - t_final)[..., None]  # [H, W, 1]
        return img, alpha

    @staticmethod
    def backward(ctx, v_img, v_alpha):
        # v_img [H, W, 4], v_alpha [H, W, 1]
        mean2d, conics, opacities, feats, background, offsets, ids, t_final, n_used = ctx.saved_tensors
        width, height = ctx.size
        n = mean2d.shape[0]
        v_entry = np.empty((ids.shape[0], _kernels.N_GRAD))  # [M, 10]
        _kernels.composite_backward(
            mean2d.numpy(), conics.numpy(), opacities.numpy(), feats.numpy(), background.numpy(),
            offsets.numpy(), ids.numpy(), width, height, t_final.numpy(), n_used.numpy(),
            v_img.contiguous().numpy(), v_alpha[..., 0].contiguous().numpy(), v_entry,
        )  # fmt: skip
        v = torch.from_numpy(_kernels.sum_entries(ids.numpy(), v_entry, n)).to(mean2d.dtype)  # [N, 10]
        v_background = (v_img[..., :3] * t_final[..., None]).sum(dim=(0, 1))  # [3]
        return v[:, 0:2], v[:, 2:5], v[:, 5], v[:, 6:10], v_background, None, None, None, None


def rasterize_cpu(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    camera: Camera,
    background: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1] of N Gaussians; inputs as `api.rasterize`.

    means [N, 3], quats [N, 4], scales [N, 3], opacities [N], colors [N, 3] or [N, K, 3],
    background [3]; all CPU tensors of one float dtype.
    """
    inputs = (means, quats, scales, opacities, colors, background)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return _rasterize_forward(*inputs, camera)
    mean2d, cov2d, depth, visible = project(means, quats, scales, camera)
    if colors.dim() == 3:
        centre = torch.tensor(camera.centre, dtype=means.dtype)  # [3]
        colors = sh_to_rgb(colors, means - centre)  # [N, 3]
    conics = _conics(cov2d, visible)  # [N, 3]
    offsets, ids = _tile_lists(mean2d, cov2d, depth, opacities, visible, camera)
    feats = torch.cat([colors, depth[:, None]], dim=-1)  # [N, 4]
    img, alpha = _Composite.apply(
        mean2d, conics, opacities, feats, background,
        torch.from_numpy(offsets), torch.from_numpy(ids), camera.width, camera.height,
    )  # fmt: skip  img [H, W, 4], alpha [H, W, 1]
    return img[..., :3], alpha, img[..., 3:]


def _rasterize_forward(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, background: Tensor,
    camera: Camera,
) -> tuple[Tensor, Tensor, Tensor]:
    """``rasterize_cpu`` when no gradient is wanted (previews, exports, live): the projection in one numba pass
    that holds no Python lock, instead of some forty torch operations; the same images."""
    arrays = [t.detach().numpy() for t in (means, quats, scales, opacities)]
    sh = colors.detach().numpy() if colors.dim() == 3 else np.zeros((len(means), 0, 3))
    xy, conic, feat, rects, order = _kernels.project_forward(
        *arrays, sh, np.asarray(camera.view, np.float64), np.asarray(camera.centre, np.float64),
        camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
    )  # fmt: skip  [N, 2], [N, 3], [N, 4], [N, 4], [V]
    if colors.dim() == 2:
        feat[:, :3] = colors.detach().numpy()
    tiles_x, tiles_y = _tile_grid(camera)
    offsets, ids = _kernels.bin_tiles(order, rects, tiles_x, tiles_x * tiles_y)
    h, w = camera.height, camera.width
    img = np.empty((h, w, _kernels.N_FEAT), dtype=arrays[0].dtype)  # [H, W, 4]
    t_final = np.empty((h, w), dtype=arrays[0].dtype)  # [H, W]
    n_used = np.empty((h, w), dtype=np.int32)  # [H, W]
    _kernels.composite_forward(
        xy, conic, arrays[3], feat, background.detach().numpy(), offsets, ids, w, h, img, t_final, n_used
    )
    img_t = torch.from_numpy(img)
    return img_t[..., :3], torch.from_numpy(1.0 - t_final)[..., None], img_t[..., 3:]
