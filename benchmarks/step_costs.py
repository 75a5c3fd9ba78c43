"""Per-step costs that were once printed by tests: one table from one run, each beside its baseline.

1. The avatar's networks (triplane, attribute MLP, deformation field, audio projection) forward + backward at the
   default 20k Gaussians: on 2 torch threads, beside 1 thread; median of 7 after a warm-up.
2. The Portrait-Sync composite of one frame (feathered oval, colour-matched ring) at 512² and at 1080p (the frame
   upscaled into a 1920x1080 canvas), beside a plain alpha blend with the same mask; median of 20.

Run by hand: ``.venv/bin/python benchmarks/step_costs.py`` (tracks may_13s.mp4 into a temporary project first).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.avatar.deform import AttributeMLP, AudioProjection, DeformationField, DeformConfig  # noqa: E402
from core.avatar.triplane import Triplane  # noqa: E402
from core.compose.portrait import composite, portrait_mask  # noqa: E402
from core.ingest import IngestJob  # noqa: E402
from core.jobs import run_job  # noqa: E402
from core.media import FrameReader  # noqa: E402
from core.project import Project  # noqa: E402
from core.tracking.track import TrackJob  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
FRAME = 100


def median_ms(fn, n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def network_step() -> callable:
    """One forward + backward of the avatar's networks over 20k points in the head box."""
    torch.manual_seed(0)
    tri = Triplane()
    attr, field, proj = AttributeMLP(tri.out_dim), DeformationField(tri.out_dim), AudioProjection(512)
    params = [p for m in (tri, attr, field, proj) for p in m.parameters()]
    lo, hi = torch.tensor([-9.0, -12.0, -10.0]), torch.tensor([9.0, 10.0, 8.0])
    xyz = lo + (hi - lo) * torch.rand(20_000, 3)  # [N,3]
    lower = xyz[:, 1] > 2.0
    window, expr = torch.randn(1, 8, 512), torch.rand(DeformConfig().expr_dim)

    def step() -> None:
        feats = tri(xyz)
        d_color, d_opacity = attr(feats)
        d = field(feats, lower, proj(window)[0], expr)
        loss = d_color.sum() + d_opacity.sum() + d.means.sum() + d.quats.sum() + d.log_scales.sum()
        torch.autograd.grad(loss, params)

    return step


def main() -> None:
    rows = []
    step = network_step()
    threads = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        rows.append((f"networks fwd+bwd, 20k Gaussians, {n} thread{'s' if n > 1 else ''}", median_ms(step, 7)))
    torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(Path(tmp) / "may")
        run_job(IngestJob(project, MEDIA / "may_13s.mp4"))
        landmarks = run_job(TrackJob(project))["landmarks"][FRAME]  # [478,2]
    with FrameReader(MEDIA / "may_13s.mp4") as reader:
        frame = reader.read(FRAME).copy()
    k = 1080 / frame.shape[0]
    big = np.zeros((1080, 1920, 3), np.uint8)
    big[:, 420:1500] = cv2.resize(frame, (1080, 1080), interpolation=cv2.INTER_LINEAR)
    for name, (f, pts) in {"512x512": (frame, landmarks), "1920x1080": (big, landmarks * k + (420, 0))}.items():
        render = cv2.GaussianBlur(np.clip(f.astype(np.float32) / 255 + 12 / 255, 0, 1), (0, 0), 1.0)
        mask = portrait_mask(pts, (f.shape[1], f.shape[0]))[..., None]  # [H,W,1]

        def plain() -> np.ndarray:
            return np.rint(mask * render * 255 + (1 - mask) * f).astype(np.uint8)

        rows.append((f"composite {name}", median_ms(lambda: composite(f, render, pts), 20)))
        rows.append((f"  baseline: plain alpha blend {name}", median_ms(plain, 20)))

    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  ms (median)")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f}")


if __name__ == "__main__":
    main()
