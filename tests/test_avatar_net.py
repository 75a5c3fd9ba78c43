"""The avatar's networks: triplane sampling, attribute and deformation MLPs, the audio projection, and the
facial-aware masked attention that keeps lip features off the upper face and expression off the lower."""

from __future__ import annotations


import pytest
import torch

from core.avatar.deform import AttributeMLP, AudioProjection, DeformationField, DeformConfig
from core.avatar.triplane import Triplane, TriplaneConfig
from core.tracking.landmarks import BLENDSHAPE_NAMES, EXPRESSION_BLENDSHAPES

N = 1000
CFG = DeformConfig()


def _head_points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [n,3] uniform in the default head box and their region (lower: y below a nose tip at y = 2)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor([-9.0, -12.0, -10.0]), torch.tensor([9.0, 10.0, 8.0])
    xyz = lo + (hi - lo) * torch.rand(n, 3, generator=g)  # [n,3]
    return xyz, xyz[:, 1] > 2.0


def _randomise(*modules: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter plus normal(0, 0.1) noise: nothing zero (the zero-initialised last layers included), so
    only the mask can make an output independent of an input; the default scales keep the softmax unsaturated."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    tri = Triplane()
    return tri, AttributeMLP(tri.out_dim), DeformationField(tri.out_dim), AudioProjection(512)


# --- triplane ----------------------------------------------------------------------------------------------
def test_triplane_shapes_and_resolutions():
    tri = Triplane()
    assert TriplaneConfig().resolutions == (32, 64, 128, 256)
    assert [tuple(p.shape) for p in tri.planes] == [(3, 4, r, r) for r in (32, 64, 128, 256)]
    xyz, _ = _head_points(N, 0)
    feats = tri(xyz)
    assert tri.out_dim == 48 and feats.shape == (N, 48) and feats.dtype == torch.float32
    assert Triplane(TriplaneConfig(levels=1, channels=2)).out_dim == 6
    with pytest.raises(ValueError):
        TriplaneConfig(bounds=(1, -1, 0, 1, 0, 1))


def test_triplane_is_bilinear_and_clamped():
    cfg = TriplaneConfig(levels=2, base_resolution=8, max_resolution=16)
    tri = Triplane(cfg)
    _randomise(tri)
    lo, hi = tri.lo, tri.hi
    plane = tri.planes[0]                     # [3,C,8,8], xy / yz / xz along (width, height)
    c = cfg.channels
    corner = tri(lo[None])[0, :3 * c].reshape(3, c)
    assert torch.equal(corner, plane[:, :, 0, 0].detach())  # a grid node reads its value exactly
    # Outside the box reads the border: the far corner and points beyond it agree, and stay finite.
    far = tri(torch.stack([hi, hi + 5.0, hi + 1e6]))
    assert torch.isfinite(far).all() and torch.equal(far[0], far[1]) and torch.equal(far[0], far[2])
    assert torch.equal(far[0, :3 * c].reshape(3, c), plane[:, :, -1, -1].detach())
    assert torch.equal(tri(lo[None] - 3.0), tri(lo[None]))
    # Halfway between the first two x nodes of level 0: the xy and xz planes read the mean of the two nodes.
    mid = lo.clone()
    mid[0] += 0.5 * (hi[0] - lo[0]) / (8 - 1)
    f = tri(mid[None])[0, :3 * c].reshape(3, c)
    for k in (0, 2):
        torch.testing.assert_close(f[k], plane[k, :, 0, :2].mean(1).detach(), atol=1e-6, rtol=0)
    # Continuity: a 1e-3 cm step changes the features a little (not piecewise constant, not jumping).
    xyz, _ = _head_points(N, 1)
    step = tri(xyz + 1e-3) - tri(xyz)
    assert 0 < step.abs().max() < 0.05


# --- deformation and attributes ----------------------------------------------------------------------------
def test_shapes():
    tri, attr, field, proj = _nets()
    xyz, lower = _head_points(N, 0)
    feats = tri(xyz)
    d_color, d_opacity = attr(feats)
    assert d_color.shape == (N, 3) and d_opacity.shape == (N,)
    for d_in in (896, 512, 384):
        p = AudioProjection(d_in)
        assert p(torch.randn(5, d_in)).shape == (5, CFG.audio_dim)
        assert p(torch.randn(5, 8, d_in)).shape == (5, CFG.audio_dim)
    lip = proj(torch.randn(1, 8, 512))[0]
    d = field(feats, lower, lip, torch.rand(CFG.expr_dim))
    assert (d.means.shape, d.quats.shape, d.log_scales.shape) == ((N, 3), (N, 4), (N, 3))
    d = field(feats, lower, torch.randn(6, CFG.audio_dim), torch.rand(6, CFG.expr_dim))
    assert (d.means.shape, d.quats.shape, d.log_scales.shape) == ((6, N, 3), (6, N, 4), (6, N, 3))
    with pytest.raises(ValueError):
        field(feats, lower, torch.randn(2, CFG.audio_dim), torch.rand(3, CFG.expr_dim))
    assert len(EXPRESSION_BLENDSHAPES) == CFG.expr_dim and set(EXPRESSION_BLENDSHAPES) <= set(BLENDSHAPE_NAMES)


def test_batched_frames_match_single_frames():
    tri, _, field, _ = _nets()
    _randomise(tri, field)
    xyz, lower = _head_points(N, 0)
    feats = tri(xyz)
    lip, expr = torch.randn(3, CFG.audio_dim), torch.rand(3, CFG.expr_dim)
    batch = field(feats, lower, lip, expr)
    for b in range(3):
        one = field(feats, lower, lip[b], expr[b])
        for name in ("means", "quats", "log_scales"):
            torch.testing.assert_close(getattr(batch, name)[b], getattr(one, name))


def test_zero_at_init_then_lower_face_learns_to_move():
    tri, attr, field, _ = _nets()
    xyz, lower = _head_points(N, 0)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        lip, expr = 10 * torch.randn(CFG.audio_dim, generator=g), torch.rand(CFG.expr_dim, generator=g)
        d = field(tri(xyz + seed), lower, lip, expr)
        assert torch.equal(d.means, torch.zeros(N, 3)) and torch.equal(d.log_scales, torch.zeros(N, 3))
        assert torch.equal(d.quats, torch.tensor([1.0, 0, 0, 0]).expand(N, 4))
        d_color, d_opacity = attr(tri(xyz))
        assert not d_color.any() and not d_opacity.any()

    opt = torch.optim.Adam([*tri.parameters(), *field.parameters()], lr=1e-2)
    lip, expr = torch.randn(CFG.audio_dim), torch.rand(CFG.expr_dim)
    target = torch.tensor([0.0, 0.5, 0.0])  # the jaw drops 5 mm
    loss = (field(tri(xyz), lower, lip, expr).means[lower] - target).square().mean()
    loss.backward()
    opt.step()
    moved = field(tri(xyz), lower, lip, expr).means[lower]
    assert (moved[:, 1] > 0).all()
    assert (moved - target).square().mean() < loss


def test_masked_attention_separates_lip_and_expression():
    """With every weight random, expression cannot reach the lower face nor lip features the upper face,
    bit for bit; each still moves its own region."""
    tri, _, field, _ = _nets()
    _randomise(tri, field)
    xyz, lower = _head_points(N, 0)
    upper = ~lower
    assert 100 < lower.sum() < N - 100
    feats = tri(xyz)
    g = torch.Generator().manual_seed(1)
    lip, lip2 = torch.randn(2, 4, CFG.audio_dim, generator=g)   # 4 frames at once
    expr, expr2 = torch.rand(2, 4, CFG.expr_dim, generator=g)
    base = field(feats, lower, lip, expr)
    new_expr = field(feats, lower, lip, expr2)
    new_lip = field(feats, lower, lip2, expr)
    for name in ("means", "quats", "log_scales"):
        b, e, a = getattr(base, name), getattr(new_expr, name), getattr(new_lip, name)  # [4,N,k]
        assert torch.equal(e[:, lower], b[:, lower]), f"expression leaked into the lower face's {name}"
        assert torch.equal(a[:, upper], b[:, upper]), f"lip features leaked into the upper face's {name}"
        assert (e[:, upper] != b[:, upper]).any(-1).all(), f"expression does not move every upper {name}"
        assert (a[:, lower] != b[:, lower]).any(-1).all(), f"lip features do not move every lower {name}"


def test_gradients_reach_every_parameter():
    tri, attr, field, proj = _nets()
    _randomise(tri, attr, field, proj)
    xyz, lower = _head_points(N, 0)
    feats = tri(xyz)
    d_color, d_opacity = attr(feats)
    lip = proj(torch.randn(2, 8, 512))                        # [2,A]
    d = field(feats, lower, lip, torch.rand(2, CFG.expr_dim))
    w = torch.Generator().manual_seed(2)
    loss = sum((t * torch.randn(t.shape, generator=w)).sum()
               for t in (d_color, d_opacity, d.means, d.quats, d.log_scales))
    loss.backward()
    for module in (tri, attr, field, proj):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{type(module).__name__}.{name}"
            assert p.grad.abs().sum() > 0, f"{type(module).__name__}.{name} has no gradient"


def test_quat_multiply_composes_rotations():
    from core.avatar.model import quat_multiply
    from core.render.cpu import quat_to_rotmat

    g = torch.Generator().manual_seed(3)
    a, b = torch.nn.functional.normalize(torch.randn(2, 50, 4, generator=g, dtype=torch.float64), dim=-1)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b), atol=1e-12)


def test_untrained_avatar_is_its_canonical_head_and_reads_audio_standardised():
    """Zero-initialised offset layers: a fresh model driven by any audio and expression draws exactly its
    canonical Gaussians; the lip feature reads the features through the stored training statistics."""
    from core.avatar.model import AvatarModel
    from core.render.splats import Splats

    splats = Splats.random(300, seed=1)
    model = AvatarModel(splats, nose_y=0.0, audio_dim=16)
    audio, expr = torch.randn(model.audio_frames, 16), torch.rand(len(EXPRESSION_BLENDSHAPES))
    driven, canonical = model(audio, expr), model()
    for key in canonical:
        assert torch.allclose(driven[key], canonical[key], atol=1e-6), key
    assert torch.allclose(canonical["means"], torch.from_numpy(splats.means))
    model.readout.normal_()
    lip = model.lip(audio)
    model.audio_mean.fill_(1.0)
    model.audio_std.fill_(2.0)
    assert torch.allclose(model.lip(2 * audio + 1), lip, atol=1e-6)


def test_mouth_readout_is_a_ridge_fit_in_context():
    """The fitted readout reproduces the training frames' mouths from their features (a generous ridge on
    few dimensions is close to least squares), each from frames j-2..j+2, then averaged over 3 frames."""
    import numpy as np

    from core.audio.mouth import MOUTH_DIM
    from core.avatar.model import AvatarConfig, AvatarModel

    rng = np.random.default_rng(0)
    t, d = 400, 6
    features = rng.normal(size=(t, d)).astype(np.float32)
    weights = rng.normal(size=(5 * d, MOUTH_DIM))
    ctx = np.clip(np.arange(t)[:, None] + np.arange(-2, 3), 0, t - 1)
    mouth = (((features[ctx] - features.mean(0)) / features.std(0)).reshape(t, -1) @ weights).astype(np.float32)
    model = AvatarModel.empty(10, d, AvatarConfig(readout_ridge=1e-3, readout_context=2, readout_smooth=3))
    model.fit_readout(features, mouth, np.arange(t))
    i = 200
    est = model.mouth(torch.from_numpy(model.audio_window(features, i))).numpy()     # [8,81]
    first = i - model.mouth_centre                                                   # the window's first centre
    assert model.mouth_centre == model.audio_frames // 2 - 2 - 1
    smoothed = (mouth[first - 1:first + 7] + mouth[first:first + 8] + mouth[first + 1:first + 9]) / 3
    assert np.allclose(est, smoothed, atol=1e-2 * np.abs(mouth).max())


def test_mouth_readout_fits_each_encoder_block_apart_and_averages():
    """With ``blocks`` (AVE + Whisper side by side) each block gets its own ridge, and the mouth estimate is
    the mean of the two blocks' estimates, each as if fitted alone."""
    import numpy as np

    from core.audio.mouth import MOUTH_DIM
    from core.avatar.model import AvatarConfig, AvatarModel

    rng = np.random.default_rng(2)
    t = 120
    features = rng.normal(size=(t, 7)).astype(np.float32)
    mouth = rng.normal(size=(t, MOUTH_DIM)).astype(np.float32)
    config = AvatarConfig(readout_context=2)

    def estimate(model: AvatarModel, feats: np.ndarray) -> np.ndarray:
        return model.mouth(torch.from_numpy(model.audio_window(feats, 60))).numpy()   # [W,81]

    fused = AvatarModel.empty(10, 7, config)
    fused.fit_readout(features, mouth, np.arange(100), blocks=(4, 3))
    alone = []
    for part in (features[:, :4], features[:, 4:]):
        model = AvatarModel.empty(10, part.shape[1], config)
        model.fit_readout(part, mouth, np.arange(100))
        alone.append(estimate(model, part))
    assert np.allclose(estimate(fused, features), (alone[0] + alone[1]) / 2, atol=1e-4)
    with pytest.raises(ValueError, match="add up"):
        fused.fit_readout(features, mouth, np.arange(100), blocks=(4, 4))


def test_lip_feature_reads_the_mouth_through_its_principal_components():
    """fit_readout keeps the training mouths' first ``mouth_components`` principal directions: a mouth moved
    along any other direction (the fourth used one or an unused one) gives the same lip feature, and one moved
    along the first does not."""
    import numpy as np

    from core.audio.mouth import MOUTH_DIM
    from core.avatar.model import AvatarConfig, AvatarModel

    rng = np.random.default_rng(1)
    t = 200
    directions = np.linalg.qr(rng.normal(size=(MOUTH_DIM, MOUTH_DIM)))[0].T                   # [81,81] orthonormal
    raw = rng.normal(size=(t, 4))
    scores = np.linalg.qr(raw - raw.mean(0))[0] * [5.0, 4.0, 3.0, 2.0]                      # [T,4] uncorrelated
    mouth = (scores @ directions[:4]).astype(np.float32)                                      # [T,81] in 4 directions
    model = AvatarModel.empty(10, 4, AvatarConfig(mouth_components=3))
    model.fit_readout(rng.normal(size=(t, 4)).astype(np.float32), mouth, np.arange(t))
    projector = model.mouth_projector.double()
    assert torch.allclose(projector @ projector, projector, atol=1e-5)                       # a projector
    assert abs(torch.trace(projector).item() - 3) < 1e-4                                      # of rank 3
    with torch.no_grad():
        for p in model.audio.parameters():
            p.normal_()
        window = torch.from_numpy(mouth[:model.config.audio_window])                          # [W,81]
        lip = model.lip_from_mouth(window)
        for minor in (3, 10):
            off = torch.from_numpy(directions[minor].astype(np.float32))
            assert torch.allclose(model.lip_from_mouth(window + 3 * off), lip, atol=1e-3)
        main = torch.from_numpy(directions[0].astype(np.float32))
        assert not torch.allclose(model.lip_from_mouth(window + 3 * main), lip, atol=1e-2)
