"""Rendering benchmark: one table, every row beside the naive pair-list torch rasterizer of the same run; then the
tile rasterizer beside one busy process.

    .venv/bin/python benchmarks/render.py [--quick]

Rows: CPU forward + backward of the tile rasterizer (core.render.cpu) at 10k Gaussians 256x256 and
50k at 512x512, and GL preview frames/s (core.render.gl, software GL here) at 20k and 100k 512x512,
set beside the naive rasterizer's forward only. Each measurement runs in a fresh subprocess, so peak
memory is that process's peak RSS growth (resource.getrusage) over its state after a warm-up.
Scenes are Splats.random (means in a cube filling the view, scales 0.2-1.2% of it: a 3-sigma area of
10-120 pixels each, opacities 0.1-0.9) seen by Splats.default_camera.

Second table: the tile rasterizer's forward + backward at 10k Gaussians 256x256 on 1 and 2 threads (numba's and
torch's), idle and beside one CPU-bound process the benchmark starts (a Python busy loop): how each thread count
survives a machine that is never idle (core/threads.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.render.camera import Camera  # noqa: E402
from core.render.cpu import project, rasterize_cpu, sh_to_rgb  # noqa: E402
from core.render.splats import Splats  # noqa: E402

PARAMS = ("means", "quats", "scales", "opacities", "colors")


def naive_rasterize(means, quats, scales, opacities, colors, camera: Camera, background):
    """The obvious vectorised rasterizer: every (pixel, Gaussian) pair inside the 3-sigma boxes as flat
    tensors, per-pixel transmittance as a segmented cumulative product (a cumsum of log(1 - alpha)),
    autograd for the backward. Returns rgb [H, W, 3] and alpha [H, W, 1]."""
    w, h = camera.width, camera.height
    mean2d, cov2d, depth, visible = project(means, quats, scales, camera)  # [N, 2], [N, 2, 2], [N], [N]
    if colors.dim() == 3:
        colors = sh_to_rgb(colors, means - torch.tensor(camera.centre, dtype=means.dtype))  # [N, 3]
    ids = torch.nonzero(visible).squeeze(1)  # [V]
    ids = ids[torch.argsort(depth.detach()[ids])]  # [V] front to back
    cov = cov2d[ids]  # [V, 2, 2]
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2  # [V]
    conic = torch.stack([cov[:, 1, 1], -cov[:, 0, 1], cov[:, 0, 0]], -1) / det[:, None]  # [V, 3]
    with torch.no_grad():
        c = cov.detach()
        mid = 0.5 * (c[:, 0, 0] + c[:, 1, 1])  # [V]
        radius = torch.ceil(3 * torch.sqrt(mid + torch.sqrt(torch.clamp_min(mid**2 - det.detach(), 0))))
        centre = mean2d.detach()[ids]  # [V, 2]
        x0 = torch.clamp(centre[:, 0] - radius, 0, w).long()  # [V]
        x1 = torch.clamp(centre[:, 0] + radius + 1, 0, w).long()  # [V]
        y0 = torch.clamp(centre[:, 1] - radius, 0, h).long()  # [V]
        y1 = torch.clamp(centre[:, 1] + radius + 1, 0, h).long()  # [V]
        bw, bh = x1 - x0, y1 - y0  # [V]
        count = bw * bh  # [V]
        g = torch.repeat_interleave(torch.arange(len(ids)), count)  # [P] pair -> Gaussian (sorted)
        local = torch.arange(len(g)) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)  # [P]
        px = x0[g] + local % bw[g]  # [P]
        py = y0[g] + local // bw[g]  # [P]
        pix = py * w + px  # [P]
        order = torch.argsort(pix, stable=True)  # [P] by pixel, then depth
        g, pix, px, py = g[order], pix[order], px[order], py[order]
    d = mean2d[ids][g] - torch.stack([px, py], -1).to(means.dtype) - 0.5  # [P, 2]
    q = conic[g]  # [P, 3]
    sigma = 0.5 * (q[:, 0] * d[:, 0] ** 2 + q[:, 2] * d[:, 1] ** 2) + q[:, 1] * d[:, 0] * d[:, 1]  # [P]
    alpha = torch.clamp(opacities[ids][g] * torch.exp(-sigma), max=0.999)  # [P]
    alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, 0.0)  # [P]
    log_t = torch.log1p(-alpha)  # [P]
    cum = torch.cumsum(log_t, 0)  # [P]
    with torch.no_grad():
        first = torch.ones_like(pix, dtype=torch.bool)  # [P] first pair of each pixel
        first[1:] = pix[1:] != pix[:-1]
        seg = torch.cumsum(first, 0) - 1  # [P] segment id
        starts = torch.nonzero(first).squeeze(1)  # [S]
    base = (cum - log_t)[starts][seg]  # [P] log T before each pixel's first pair
    trans = torch.exp(cum - log_t - base)  # [P] exclusive product of (1 - alpha)
    alive = (trans * (1 - alpha) > 1e-4).to(means.dtype)  # [P] early stop
    weight = alpha * trans * alive  # [P]
    rgb = torch.zeros(h * w, 3, dtype=means.dtype).index_add(0, pix, colors[ids][g] * weight[:, None])
    acc = torch.zeros(h * w, dtype=means.dtype).index_add(0, pix, weight)  # [H*W]
    rgb = rgb + (1 - acc)[:, None] * background  # [H*W, 3]
    return rgb.reshape(h, w, 3), acc.reshape(h, w, 1)


def scene(n: int, size: int):
    """Splats.random(n) as float32 leaf tensors requiring grad, with its default camera at size^2."""
    splats = Splats.random(n, seed=0)
    params = {k: v.clone().requires_grad_(True) for k, v in splats.activated().items()}
    return splats, params, splats.default_camera(size, size)


def measure(kind: str, n: int, size: int, reps: int) -> dict:
    """One row's figure in this process: median seconds per call and peak RSS growth in bytes."""
    background = torch.zeros(3)
    if kind.startswith("gl"):
        from core.render.gl import GLSplatRenderer, headless_context

        splats, _, camera = scene(n, size)
        renderer = GLSplatRenderer(headless_context())
        renderer.set_splats(splats)
        fbo = renderer.ctx.framebuffer([renderer.ctx.renderbuffer((size, size), 4, dtype="f4")])

        def step(i: int) -> None:  # orbit a little every frame, so every frame sorts and projects
            cos, sin = np.cos(0.02 * i), np.sin(0.02 * i)
            view = camera.view.copy()  # [4, 4]
            view[:3, :3] = view[:3, :3] @ np.array([[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]])
            renderer.render(camera.with_view(view), (0, 0, 0), fbo)
            renderer.ctx.finish()

        step(-1)
    else:
        fn = {"tile": rasterize_cpu, "naive": naive_rasterize}[kind.split("-")[0]]
        grad = kind.endswith("-bwd")
        warm = scene(200, 32)
        run = fn(*[warm[1][k] for k in PARAMS], warm[2], background)
        (run[0].sum() + run[1].sum()).backward()
        _, params, camera = scene(n, size)

        def step(i: int) -> None:
            with torch.set_grad_enabled(grad):
                out = fn(*[params[k] for k in PARAMS], camera, background)
                if grad:
                    (out[0].sum() + out[1].sum()).backward()

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for i in range(reps):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": statistics.median(times), "peak": peak - base}


def in_subprocess(kind: str, n: int, size: int, reps: int, threads: int | None = None) -> dict:
    """measure() in a fresh interpreter (on ``threads`` numba and torch threads; default: theirs); {"error": ...}
    when it fails."""
    cmd = [sys.executable, __file__, "--worker", kind, str(n), str(size), str(reps)]
    env = None if threads is None else {**os.environ, "NUMBA_NUM_THREADS": str(threads),
                                        "OMP_NUM_THREADS": str(threads), "BENCH_TORCH_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt_time(r: dict, fps: bool = False) -> str:
    if "error" in r:
        return "n/a"
    return f"{1 / r['seconds']:.1f} fps" if fps else f"{r['seconds'] * 1e3:.0f} ms"


def fmt_mem(r: dict) -> str:
    return "n/a" if "error" in r else f"{r['peak'] / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, n, size, reps = args.worker
        if "BENCH_TORCH_THREADS" in os.environ:
            torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
        print(json.dumps(measure(kind, int(n), int(size), int(reps))))
        return
    many = 5 if args.quick else 15
    rows = [  # label, ours, naive, n, size, reps (ours, naive), target
        ("CPU fwd+bwd  10k, 256x256", "tile-bwd", "naive-bwd", 10_000, 256, (many, many), "<= 60 ms"),
        ("CPU fwd+bwd  50k, 512x512", "tile-bwd", "naive-bwd", 50_000, 512, (many, 2), "<= 1.5 s, <= 1 GiB"),
        ("GL preview   20k, 512x512", "gl", "naive-fwd", 20_000, 512, (3 * many, 2), "frames/s"),
        ("GL preview  100k, 512x512", "gl", "naive-fwd", 100_000, 512, (3 * many, 1), "frames/s"),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians; peak = RSS growth")
    header = ("row", "ours", "ours peak", "naive", "naive peak", "speed-up", "target")
    lines = []
    for label, ours, naive, n, size, (reps_ours, reps_naive), target in rows:
        a = in_subprocess(ours, n, size, reps_ours)
        b = in_subprocess(naive, n, size, reps_naive)
        fps = ours == "gl"
        speedup = "n/a" if "error" in a or "error" in b else f"{b['seconds'] / a['seconds']:.1f}x"
        lines.append((label, fmt_time(a, fps), fmt_mem(a), fmt_time(b, fps), fmt_mem(b), speedup, target))
        for r in (a, b):
            if "error" in r:
                print(f"  ({label}: {r['error']})", file=sys.stderr)
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *lines]:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)) + " |")
    print("GL rows: render() into a float framebuffer + finish, orbiting 0.02 rad a frame (every frame")
    print("re-sorts); naive there is its forward only (no grad), as frames/s.")
    print()
    under_load(many)


def busy_process() -> subprocess.Popen:
    """One CPU-bound process (a Python busy loop) until killed: the machine a user's laptop always is."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def under_load(reps: int) -> None:
    """The tile rasterizer's fwd+bwd at 10k 256² on 1 and 2 threads, idle and beside one busy process."""
    rows = []
    for threads in (1, 2):
        idle = in_subprocess("tile-bwd", 10_000, 256, 2 * reps, threads)
        load = busy_process()
        try:
            time.sleep(0.5)
            busy = in_subprocess("tile-bwd", 10_000, 256, 2 * reps, threads)
        finally:
            load.kill()
            load.wait()
        ratio = "n/a" if "error" in idle or "error" in busy else f"{busy['seconds'] / idle['seconds']:.1f}x"
        rows.append((f"tile fwd+bwd 10k 256², {threads} thread{'s' * (threads > 1)}", fmt_time(idle), fmt_time(busy),
                     ratio, "<= 2x"))
    header = ("row", "idle", "beside 1 busy process", "busy / idle", "target")
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)) + " |")


if __name__ == "__main__":
    main()
