"""The CPU tile rasterizer against a brute-force oracle: every pixel x every Gaussian, float64 torch.

The oracle follows the rendering rules of the shared contract literally (gsplat's classic EWA
projection, per-pixel front-to-back compositing with alpha skip, clamp and early stop) with no
tiles, no bounding boxes and autograd for its gradients. Both sides run in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.render import BACKENDS, Camera, RenderOutput, available_backends, rasterize

IMAGE_TOL = 1e-5  # max |cpu - oracle| / max |oracle|, per image
GRAD_TOL = 1e-4  # the same, per parameter gradient
PARAMS = ("means", "quats", "scales", "opacities", "colors")

# the real SH basis of 3DGS's sh_utils.eval_sh, written out term by term
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)  # fmt: skip


def oracle_sh(sh: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """RGB [N, 3] of SH coefficients sh [N, K, 3] along unit directions d [N, 3], as 3DGS's eval_sh."""
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]  # 3 x [N, 1]
    out = SH_C0 * sh[:, 0]  # [N, 3]
    k = sh.shape[1]
    if k > 1:
        out = out - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
    if k > 4:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z  # 6 x [N, 1]
        out = (
            out + SH_C2[0] * xy * sh[:, 4] + SH_C2[1] * yz * sh[:, 5]
            + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6] + SH_C2[3] * xz * sh[:, 7]
            + SH_C2[4] * (xx - yy) * sh[:, 8]
        )  # fmt: skip
    if k > 9:
        out = (
            out + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + SH_C3[1] * xy * z * sh[:, 10]
            + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
            + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
            + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + SH_C3[5] * z * (xx - yy) * sh[:, 14]
            + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15]
        )  # fmt: skip
    return torch.clamp_min(out + 0.5, 0.0)


def oracle(means, quats, scales, opacities, colors, camera: Camera, background) -> RenderOutput:
    """Brute force: every pixel against every Gaussian, in depth order, plain float64 torch."""
    view = torch.tensor(camera.view)  # [4, 4]
    w2c, t = view[:3, :3], view[:3, 3]  # [3, 3], [3]
    fx, fy, cx, cy, width, height = camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height

    # 3D covariance R S S^T R^T from the normalised quaternion
    q = quats / quats.norm(dim=1, keepdim=True).clamp_min(1e-12)  # [N, 4]
    qw, qx, qy, qz = q.unbind(1)  # 4 x [N]
    rot = torch.stack([
        torch.stack([1 - 2 * (qy**2 + qz**2), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)], -1),
        torch.stack([2 * (qx * qy + qw * qz), 1 - 2 * (qx**2 + qz**2), 2 * (qy * qz - qw * qx)], -1),
        torch.stack([2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx**2 + qy**2)], -1),
    ], 1)  # fmt: skip  [N, 3, 3]
    cov3 = rot @ torch.diag_embed(scales**2) @ rot.transpose(1, 2)  # [N, 3, 3]

    # camera space; culled Gaussians get z = 1 so that nothing non-finite reaches autograd
    pc = means @ w2c.T + t  # [N, 3]
    keep = (pc[:, 2] >= 0.01) & (pc[:, 2] <= 1e10)  # [N]
    z = torch.where(keep, pc[:, 2], torch.ones_like(pc[:, 2]))  # [N]
    u = fx * pc[:, 0] / z + cx  # [N]
    v = fy * pc[:, 1] / z + cy  # [N]
    # perspective Jacobian at the mean, its x/z and y/z clamped to 1.3x the field of view (gsplat)
    tx = z * (pc[:, 0] / z).clamp(-(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
    ty = z * (pc[:, 1] / z).clamp(-(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
    J = torch.zeros(len(z), 2, 3, dtype=torch.float64)  # [N, 2, 3]
    J[:, 0, 0] = fx / z
    J[:, 0, 2] = -fx * tx / z**2
    J[:, 1, 1] = fy / z
    J[:, 1, 2] = -fy * ty / z**2
    cov2 = J @ w2c @ cov3 @ w2c.T @ J.transpose(1, 2) + 0.3 * torch.eye(2, dtype=torch.float64)  # [N, 2, 2]

    with torch.no_grad():  # cull: behind the near plane, or the 3-sigma box misses the image
        radius = torch.ceil(3 * torch.linalg.eigvalsh(cov2)[:, 1].sqrt())  # [N]
        keep = keep & (u + radius > 0) & (u - radius < width) & (v + radius > 0) & (v - radius < height)
    idx = torch.nonzero(keep).squeeze(1)  # [V]
    idx = idx[torch.argsort(z[idx].detach(), stable=True)]  # [V] front to back

    if colors.dim() == 3:
        dirs = means - torch.tensor(camera.centre)  # [N, 3]
        colors = oracle_sh(colors, dirs / dirs.norm(dim=1, keepdim=True))  # [N, 3]
    conic = torch.linalg.inv(cov2[idx])  # [V, 2, 2]

    jj, ii = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pix = torch.stack([ii, jj], -1).reshape(-1, 2).double() + 0.5  # [P, 2] pixel centres
    T = torch.ones(len(pix), dtype=torch.float64)  # [P]
    done = torch.zeros(len(pix), dtype=torch.bool)  # [P]
    rgb = torch.zeros(len(pix), 3, dtype=torch.float64)  # [P, 3]
    depth = torch.zeros(len(pix), dtype=torch.float64)  # [P]
    for k, i in enumerate(idx.tolist()):
        d = torch.stack([u[i], v[i]]) - pix  # [P, 2]
        sigma = 0.5 * torch.einsum("pi,ij,pj->p", d, conic[k], d)  # [P]
        alpha = torch.clamp(opacities[i] * torch.exp(-sigma), max=0.999)  # [P]
        used = (sigma >= 0) & (alpha >= 1 / 255) & ~done  # [P]
        next_T = T * (1 - alpha)  # [P]
        done = done | (used & (next_T <= 1e-4))
        used = used & ~done
        rgb = rgb + torch.where(used[:, None], colors[i] * (alpha * T)[:, None], 0.0)
        depth = depth + torch.where(used, z[i] * alpha * T, 0.0)
        T = torch.where(used, next_T, T)
    rgb = rgb + T[:, None] * background  # [P, 3]
    return RenderOutput(
        rgb.reshape(height, width, 3), (1 - T).reshape(height, width, 1), depth.reshape(height, width, 1)
    )


def make_scene(seed: int, n: int, sh_degree: int | None = None, dtype=torch.float64, opacity=(0.1, 0.9)):
    """Gaussians in front of a camera at the origin, filling a 32x24 view; parameter dict."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(1.5, 4.0, n)
    xy = rng.uniform(-0.55, 0.55, (n, 2)) * z[:, None]
    colors = rng.uniform(0, 1, (n, 3)) if sh_degree is None else rng.normal(0, 0.3, (n, (sh_degree + 1) ** 2, 3))
    params = {
        "means": np.concatenate([xy, z[:, None]], 1),
        "quats": rng.normal(size=(n, 4)),
        "scales": rng.uniform(0.02, 0.25, (n, 3)),
        "opacities": rng.uniform(*opacity, n),
        "colors": colors,
    }
    return {k: torch.tensor(v, dtype=dtype) for k, v in params.items()}


def make_camera(width: int = 32, height: int = 24, seed: int = 0) -> Camera:
    """A camera near the origin looking down +z, slightly off-axis so nothing is symmetric."""
    rng = np.random.default_rng(seed)
    eye = rng.normal(0, 0.05, 3)
    return Camera.look_at(eye, eye + np.array([0.03, -0.02, 1.0]), np.array([0.0, -1.0, 0.0]), 60.0, width, height)


def render_and_grads(fn, scene: dict, camera: Camera, background: torch.Tensor, weights: list[torch.Tensor]):
    """Images and the gradients of sum(weights * images) with respect to every parameter."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
    out = fn(**leaves, camera=camera, background=background)
    images = [out.rgb, out.alpha, out.depth]
    loss = sum((w.to(im.dtype) * im).sum() for w, im in zip(weights, images))
    if not loss.requires_grad:  # the oracle of an empty scene never touches its parameters
        return [im.detach() for im in images], {k: torch.zeros_like(leaves[k]) for k in PARAMS}
    grads = torch.autograd.grad(loss, [leaves[k] for k in PARAMS], allow_unused=True)
    grads = [torch.zeros_like(leaves[k]) if g is None else g for k, g in zip(PARAMS, grads)]
    return [im.detach() for im in images], dict(zip(PARAMS, grads))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (absolute when b is all zeros)."""
    a, b = a.double(), b.double()
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-12))


def compare(scene: dict, camera: Camera, seed: int = 0, image_tol=IMAGE_TOL, grad_tol=GRAD_TOL) -> dict:
    """Run the CPU backend and the oracle on one scene; assert the bounds; return the errors."""
    gen = torch.Generator().manual_seed(seed)
    h, w = camera.height, camera.width
    weights = [torch.randn(h, w, c, generator=gen, dtype=torch.float64) for c in (3, 1, 1)]
    background = torch.rand(3, generator=gen, dtype=torch.float64)
    ref64 = {k: v.double() for k, v in scene.items()}
    cpu = lambda **kw: rasterize(**kw, backend="cpu")  # noqa: E731
    images, grads = render_and_grads(cpu, scene, camera, background.to(scene["means"].dtype), weights)
    ref_images, ref_grads = render_and_grads(oracle, ref64, camera, background, weights)
    errors = {}
    for name, a, b in zip(("rgb", "alpha", "depth"), images, ref_images):
        assert torch.isfinite(a).all(), name
        errors[name] = rel_err(a, b)
    for name in PARAMS:
        assert torch.isfinite(grads[name]).all(), name
        errors["d_" + name] = rel_err(grads[name], ref_grads[name])
    with torch.no_grad():  # the forward-only path (previews, exports, live): the same images
        forward = rasterize(**scene, camera=camera, background=background.to(scene["means"].dtype), backend="cpu")
    for name, a, b in zip(("rgb", "alpha", "depth"), (forward.rgb, forward.alpha, forward.depth), ref_images):
        assert torch.isfinite(a).all() and a.dtype == scene["means"].dtype, name
        errors["forward " + name] = rel_err(a, b)
    bad = {k: e for k, e in errors.items() if e > (image_tol if k[:2] != "d_" else grad_tol)}
    assert not bad, f"errors over the bound: {bad}"
    return errors


@pytest.mark.parametrize("sh_degree", [None, 0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_scene_matches_oracle(seed, sh_degree):
    errors = compare(make_scene(seed, 48, sh_degree), make_camera(seed=seed), seed)
    print(f"seed {seed} sh {sh_degree}: worst {max(errors.values()):.2e}", errors)


def test_opaque_crowd_stops_early_and_clamps():
    """Opacities at and above the 0.999 clamp, stacked deep: the early stop and the clamp both act."""
    scene = make_scene(7, 60, opacity=(0.9, 1.0))
    scene["opacities"][::3] = 1.0
    scene["scales"] = scene["scales"] * 3
    compare(scene, make_camera(seed=7), seed=7)


def test_float32_against_float64_oracle():
    """The CPU backend in float32 (how training runs) meets the same bounds against the float64 oracle."""
    scene = make_scene(3, 48, sh_degree=1, dtype=torch.float32)
    errors = compare(scene, make_camera(seed=3), seed=3)
    print("float32:", errors)


CASES = ("behind", "off_screen", "zero_scale", "huge_scale", "zero_opacity", "one_pixel", "empty")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**31 - 1), sh=st.sampled_from([None, 0, 2]))
def test_edge_cases_finite_and_match_oracle(case, seed, sh):
    scene = make_scene(seed, 24, sh)
    camera = make_camera(seed=seed)
    part = slice(0, 12)
    if case == "behind":  # behind the camera, on the camera plane and just inside the near plane
        scene["means"][part, 2] = torch.tensor([-2.0, -0.5, 0.0, 0.005, 0.0099, 0.02] * 2)
    elif case == "off_screen":
        scene["means"][part, 0] = scene["means"][part, 2] * torch.tensor([3.0, -3.0, 0.62, -0.62] * 3)
    elif case == "zero_scale":
        scene["scales"][part] = 0.0
        scene["scales"][part.stop :, 0] = 0.0
    elif case == "huge_scale":
        scene["scales"][part] = torch.tensor([1e3, 1e5, 1.0])
        scene["quats"][0] = 0.0  # a zero quaternion too: normalised to the identity rotation
    elif case == "zero_opacity":
        scene["opacities"][part] = torch.tensor([0.0, 1e-4, 1 / 255, 0.0039] * 3)
    elif case == "one_pixel":
        camera = make_camera(1, 1, seed=seed)
        scene["scales"] = scene["scales"] * 4
    elif case == "empty":
        scene = {k: v[:0] for k, v in scene.items()}
    compare(scene, camera, seed=seed % 1000)


def test_outputs_shapes_and_empty_scene_is_background():
    scene = {k: v[:0] for k, v in make_scene(0, 1).items()}
    background = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    out = rasterize(**scene, camera=make_camera(5, 3), background=background)
    assert out.rgb.shape == (3, 5, 3) and out.alpha.shape == (3, 5, 1) and out.depth.shape == (3, 5, 1)
    assert torch.equal(out.rgb, background.expand(3, 5, 3))
    assert not out.alpha.any() and not out.depth.any()


def test_background_gradient_is_final_transmittance():
    scene = make_scene(4, 30)
    background = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    out = rasterize(**scene, camera=make_camera(seed=4), background=background)
    out.rgb.sum().backward()
    expected = (1 - out.alpha.detach()).sum().expand(3)
    torch.testing.assert_close(background.grad, expected)


def test_bad_arguments_raise_value_error():
    scene = make_scene(0, 4)
    camera = make_camera()
    with pytest.raises(ValueError, match="unknown render backend"):
        rasterize(**scene, camera=camera, backend="vulkan")
    with pytest.raises(ValueError, match="quats"):
        rasterize(**{**scene, "quats": scene["quats"][:, :3]}, camera=camera)
    with pytest.raises(ValueError, match="colors"):
        rasterize(**{**scene, "colors": torch.zeros(4, 5, 3, dtype=torch.float64)}, camera=camera)
    with pytest.raises(ValueError, match="opacities"):
        rasterize(**{**scene, "opacities": scene["opacities"].float()}, camera=camera)
    with pytest.raises(ValueError, match="background"):
        rasterize(**scene, camera=camera, background=torch.zeros(4, dtype=torch.float64))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            rasterize(**scene, camera=camera, backend="cuda")
    assert "cpu" in available_backends() and set(available_backends()) <= set(BACKENDS)


def test_camera_look_at_conventions():
    camera = Camera.look_at([1.0, 2.0, 3.0], [1.0, 2.0, 10.0], [0.0, -1.0, 0.0], 90.0, 64, 48)
    np.testing.assert_allclose(camera.centre, [1, 2, 3], atol=1e-12)
    # a point straight ahead lands on the principal point; +x world is right, -y world is up
    for world, pixel in (([1, 2, 5], [32, 24]), ([2, 2, 5], [32 + 12, 24]), ([1, 1, 5], [32, 24 - 12])):
        p = camera.view @ np.array([*world, 1.0])
        np.testing.assert_allclose((camera.K @ p[:3])[:2] / p[2], pixel, atol=1e-9)
    assert camera.fy == pytest.approx(24.0) and camera.K.shape == (3, 3)
    moved = camera.with_view(np.eye(4))
    assert moved != camera and moved == camera.with_view(np.eye(4))
    assert hash(moved) == hash(camera.with_view(np.eye(4))) and moved.width == 64
    with pytest.raises(ValueError):
        Camera(np.eye(3), 1, 1, 0, 0, 4, 4)
