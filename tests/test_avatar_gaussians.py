"""Canonical Gaussians from the tracked template: where they start, what colour, and that the first render
already looks like the subject's face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.avatar.gaussians import InitConfig, canonical_gaussians, frame_camera
from core.media import FrameReader
from core.project import Project
from core.render.api import rasterize
from core.tracking.regions import face_oval_mask
from core.tracking.template import LIPS, canonical_mesh
from core.tracking.track import load_tracking

FRAME = 100


@pytest.fixture(scope="module")
def head(tracked_project):
    project = Project.open(tracked_project("may_13s.mp4"))
    tr = load_tracking(project)
    with FrameReader(project.footage.path) as reader:
        frame = reader.read(FRAME)
    pose = (tr["rot"][FRAME], tr["trans"][FRAME], float(tr["focal"]), float(tr["cx"]), float(tr["cy"]))
    init = canonical_gaussians(tr["template"], canonical_mesh().triangles, frame, *pose, InitConfig(n_gaussians=8000))
    return init, tr, frame, pose


def test_counts_regions_and_colours(head):
    init, tr, _, _ = head
    splats = init.splats
    assert len(splats) == 8000 and init.lower.dtype == bool
    assert 0.2 < init.lower.mean() < 0.8
    lo, hi = tr["template"].min(0), tr["template"].max(0)
    surface = splats.means[:4800]
    assert np.all(surface >= lo - 1e-4) and np.all(surface <= hi + 1e-4)      # on the template's triangles
    rgb = splats.sh[:, 0] * 0.28209479177387814 + 0.5                        # [N,3]
    lips = tr["template"][LIPS]
    near_lips = np.linalg.norm(surface[:, None] - lips[None], axis=2).min(1) < 0.3
    assert near_lips.sum() > 20
    r, g, _ = rgb[:4800][near_lips].mean(0)
    assert r > g + 0.1                                                          # lipstick red, from the frame


def test_first_render_resembles_the_face(head, artifacts_dir):
    init, tr, frame, pose = head
    camera = frame_camera(*pose, frame.shape[1], frame.shape[0])
    params = init.splats.activated()
    params["opacities"] = torch.full_like(params["opacities"], 0.9)            # see the colours, not the 0.1 start
    out = rasterize(**params, camera=camera, background=torch.zeros(3), backend="cpu")
    render = (out.rgb.clamp(0, 1).numpy() * 255).astype(np.uint8)              # [H,W,3]
    face = face_oval_mask(tr["landmarks"][FRAME], (frame.shape[1], frame.shape[0]))
    coverage = out.alpha[..., 0].numpy()[face].mean()
    a = render[face].astype(np.float64).mean(1)
    b = frame[face].astype(np.float64).mean(1)
    corr = np.corrcoef(a, b)[0, 1]
    Image.fromarray(np.concatenate([frame, render], axis=1)).save(artifacts_dir / "avatar_init_render.png")
    print(f"init render: face coverage {coverage:.3f}, brightness correlation with the frame {corr:.3f}")
    assert coverage > 0.95 and corr > 0.6
