"""The avatar's canonical Gaussians, initialised from the subject's fitted face template (tracking).

Head space as tracking's: x right, y down, z away from the camera, centimetres; a frame's camera sees
head point X at R X + t. Most Gaussians start on the template's surface (area-weighted over its
triangles), the rest fill an ellipsoid around it for hair, ears and the back of the head. Colours come
from a reference frame seen under its stabilised pose, so the first render already resembles the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.render.camera import Camera
from core.render.splats import SH_C0, Splats
from core.tracking.pose import project
from core.tracking.template import NOSE_TIP


@dataclass(frozen=True)
class InitConfig:
    n_gaussians: int = 20_000
    surface_fraction: float = 0.6   # on the template's surface; the rest fill the head volume
    volume_scale: float = 1.25      # the ellipsoid's half-axes over the template's half-extent
    opacity: float = 0.1            # 3DGS's starting opacity
    seed: int = 0


@dataclass
class CanonicalHead:
    splats: Splats
    lower: np.ndarray               # bool [N]: below the nose tip (attends to lip features, Eq. 6)


def canonical_gaussians(template: np.ndarray, triangles: np.ndarray, frame: np.ndarray, rot: np.ndarray,
                        trans: np.ndarray, focal: float, cx: float, cy: float,
                        config: InitConfig = InitConfig()) -> CanonicalHead:
    """Gaussians from the subject's template [468,3] (head space, cm) and its triangles [F,3], coloured from
    ``frame`` uint8 [H,W,3] under its pose (rot [3,3], trans [3]) and intrinsics."""
    rng = np.random.default_rng(config.seed)
    n_surface = int(round(config.n_gaussians * config.surface_fraction))
    n_volume = config.n_gaussians - n_surface

    # Surface: area-weighted triangles, uniform barycentric points.
    tri = template[triangles]                                                    # [F,3,3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)  # [F]
    pick = rng.choice(len(tri), n_surface, p=area / area.sum())
    u, v = rng.random(n_surface), rng.random(n_surface)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[pick]                                                                # [S,3,3]
    surface = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])  # [S,3]
    surface_sigma = np.sqrt(area.sum() / max(n_surface, 1)) / 2                 # half the spacing, cm

    # Volume: uniform in an ellipsoid around the template.
    lo, hi = template.min(0), template.max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2 * config.volume_scale
    direction = rng.normal(size=(n_volume, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    volume = centre + direction * rng.random((n_volume, 1)) ** (1 / 3) * half     # [V,3]
    volume_sigma = (4 / 3 * np.pi * np.prod(half) / max(n_volume, 1)) ** (1 / 3) / 2

    means = np.concatenate([surface, volume]).astype(np.float32)                # [N,3]
    sigma = np.concatenate([np.full(n_surface, surface_sigma), np.full(n_volume, volume_sigma)])
    rgb = sample_colors(means, frame, rot, trans, focal, cx, cy)                 # [N,3] in [0,1]
    logit = np.log(config.opacity / (1 - config.opacity))
    splats = Splats(
        means=means,
        quats=np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (len(means), 1)),
        log_scales=np.repeat(np.log(sigma)[:, None], 3, axis=1),
        opacity_logits=np.full(len(means), logit),
        sh=((rgb - 0.5) / SH_C0)[:, None, :],
    )
    return CanonicalHead(splats, means[:, 1] > template[NOSE_TIP, 1])


def sample_colors(points: np.ndarray, frame: np.ndarray, rot: np.ndarray, trans: np.ndarray, focal: float,
                  cx: float, cy: float) -> np.ndarray:
    """float32 [N,3] in [0,1]: the frame's colour (bilinear) where each head-space point [N,3] projects;
    points off the frame take the nearest edge pixel."""
    h, w = frame.shape[:2]
    uv = project(points, rot, trans, focal, cx, cy) - 0.5                       # [N,2] pixel-centre coords
    x = np.clip(uv[:, 0], 0, w - 1)
    y = np.clip(uv[:, 1], 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2), np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = frame.astype(np.float32) / 255.0
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def frame_camera(rot: np.ndarray, trans: np.ndarray, focal: float, cx: float, cy: float, width: int,
                 height: int) -> Camera:
    """The Camera that sees head space as the tracked frame does (view = [R | t])."""
    view = np.eye(4)
    view[:3, :3], view[:3, 3] = rot, trans
    return Camera(view, focal, focal, cx, cy, width, height)
