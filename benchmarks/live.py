"""Live mode benchmark: one table from one run, idle and beside one busy process, with the baked path's cost.

Run by hand on a May project with a trained avatar (cpu-draft)::

    python benchmarks/train.py --clips may_13s --keep DIR      # makes DIR/may_13s
    python benchmarks/live.py --project DIR/may_13s [--seconds 60]

1. The baked deformation (core.avatar.bake) against the network: face PSNR, SSIM and mouth r on May's held-out
   frames (the last 20%), audio-driven, composited and scored as ``eval`` scores them (target: within 0.5 dB), and
   the bake's own time.
2. The Viewport's frame: the avatar's Gaussians at a frame (network, then baked) -> the GL preview renderer at 512²
   (headless here: Mesa's llvmpipe, software GL), frames per second at full resolution, and baked while playing:
   drawn at the share of the resolution that keeps up and stretched over 512², as the Viewport draws a playing
   scene (target >= 25); and the full-resolution draw at 256² (a small dock).
3. Live mode fed speech_en_60s_16k.wav through the real-time paced file source (the microphone's path: 10 ms chunks
   at the times a microphone would deliver them), recording the whole session: latency from the sound at a frame's
   time arriving to the frame shown (median, 95th percentile; target median <= 150 ms), frames per second shown from
   the first second on (between the first and the last frame shown; target >= 25 idle, >= 20 beside one busy
   process), frames dropped, CPU share of the machine, and the mouth opening of the recorded take (tracked by our
   tracker) against the offline dub of the same speech (exact network, the same footage in ping-pong; torso restorer
   off; target r >= 0.95). Rows: the live speech model (the default: 140 ms of look-ahead) idle; the project's
   speech model (the dub's own: 240 ms) idle; the live model with no look-ahead past the speech model's
   (``--lookahead 0``: the avatar's lip window then repeats the newest mouth instead of waiting 4 frames); the live
   model beside one CPU-bound process the benchmark starts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.features import load_features  # noqa: E402
from core.audio.mouth import mouth_opening  # noqa: E402
from core.avatar.drive import Driver  # noqa: E402
from core.baselines import score  # noqa: E402
from core.dub import DubConfig, DubJob  # noqa: E402
from core.jobs import CancelToken, Progress, run_job  # noqa: E402
from core.live.session import LiveConfig, LiveJob  # noqa: E402
from core.media import FrameReader  # noqa: E402
from core.metrics import mouth_sync_r, pearson  # noqa: E402
from core.project import Project  # noqa: E402
from core.split import training_frames  # noqa: E402
from core.threads import single_threaded  # noqa: E402
from core.tracking.landmarks import detect_landmarks  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
SPEECH = MEDIA / "speech_en_60s_16k.wav"


def bake_cost(project: Project) -> dict[str, float]:
    """Face PSNR, SSIM and mouth r of the held-out frames through the network and through the bake."""
    driver = Driver.load(project)
    features = load_features(project).features
    fps = Fraction(project.checked_footage().info["fps"])
    t = len(driver.views)
    held = np.arange(training_frames(t, driver.config.holdout), t)
    held = held[driver.views.valid[held]]
    with FrameReader(project.checked_footage().path) as reader:
        real = [reader.read(int(i)) for i in held]

    def renders() -> list[np.ndarray]:
        return [driver.frame(frame, int(i), driver.lip(driver.model.audio_window(features, int(i))),
                             driver.views.expr[i]) for frame, i in zip(real, held)]

    exact = score(renders(), real, driver.views.landmarks[held], fps)
    begun = time.perf_counter()
    driver.bake(features)
    seconds = time.perf_counter() - begun
    baked = score(renders(), real, driver.views.landmarks[held], fps)
    return {"exact_psnr": exact["face_psnr"], "baked_psnr": baked["face_psnr"], "exact_ssim": exact["ssim"],
            "baked_ssim": baked["ssim"], "exact_mouth_r": exact["mouth_r"], "baked_mouth_r": baked["mouth_r"],
            "bake_s": seconds, "frames": len(held), "gaussians": len(driver.model)}


def viewport_fps(project: Project, frames: int = 60) -> dict[str, float]:
    """The Viewport's per-frame work: Gaussians at the frame -> GL upload -> draw (512², and 256²) -> finish."""
    from core.render.gl import GLSplatRenderer, PlaybackScale, headless_context
    from studio.panels.viewport import gaussians_to_splats

    driver = Driver.load(project)
    features = load_features(project).features
    renderer = GLSplatRenderer(headless_context())
    canonical = driver.gaussians(driver.lip(driver.model.audio_window(features, 0)), driver.views.expr[0])

    def run(size: int, playing: bool = False) -> tuple[float, float]:
        """(frames per second, the share of the resolution drawn at, median) at ``size``²; ``playing``: drawn at
        the resolution that keeps up, as the Viewport draws a playing scene (core.render.gl.PlaybackScale)."""
        fbo = renderer.ctx.framebuffer([renderer.ctx.renderbuffer((size, size), 4, dtype="f4")])
        camera = gaussians_to_splats(canonical).default_camera(size, size)     # the Viewport's framing
        playback = PlaybackScale()
        times, scales = [], []
        for i in range(frames):
            begun = time.perf_counter()
            k = i % len(driver.views)
            g = driver.gaussians(driver.lip(driver.model.audio_window(features, k)), driver.views.expr[k])
            renderer.set_splats(gaussians_to_splats(g))
            scale = playback.scale if playing else 1.0
            drawing = time.perf_counter()
            renderer.render(camera, (0, 0, 0), fbo, scale)
            renderer.ctx.finish()
            playback.measured(time.perf_counter() - drawing, scale)
            times.append(time.perf_counter() - begun)
            scales.append(scale)
        return 1.0 / statistics.median(times[5:]), statistics.median(scales[5:])

    network = run(512)[0]
    driver.bake(features)
    playing, scale = run(512, playing=True)
    return {"network_fps": network, "baked_fps": run(512)[0], "baked_fps_256": run(256)[0],
            "playing_fps": playing, "playing_scale": scale}


def live(project: Project, seconds: float, config: LiveConfig, out: Path) -> dict[str, float]:
    """A live session from the paced file, recorded; its figures."""
    cpu: list[tuple[float, float]] = []

    def progress(p: Progress) -> None:
        if p.fraction >= 0.2:           # preparing (loading, baking) is over
            cpu.append((time.perf_counter(), time.process_time()))

    run = LiveJob(project, str(SPEECH), config, out, None, seconds).run(progress, CancelToken())
    s = run.stats
    lat = np.array(run.latencies[25:])   # after the first second
    shown = run.shown[25:]
    (w0, c0), (w1, c1) = cpu[0], cpu[-1]
    return {"latency_ms": 1e3 * float(np.median(lat)), "latency_p95_ms": 1e3 * float(np.percentile(lat, 95)),
            "fps": (len(shown) - 1) / (shown[-1] - shown[0]), "frames": s.frames, "dropped": s.dropped,
            "late": s.late,
            "cpu": (c1 - c0) / (w1 - w0) / 2, "first": run.first_frame or 0}


def in_subprocess(project: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--project", project, "--viewport-only"], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def opening(video: Path) -> np.ndarray:
    with FrameReader(video) as reader:
        return mouth_opening(detect_landmarks(reader).landmarks)


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, help="a May project with a trained avatar")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of live input per row")
    parser.add_argument("--viewport-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    single_threaded()
    project = Project.open(Path(args.project))
    if args.viewport_only:
        print(json.dumps(viewport_fps(project)))
        return
    out = Path(tempfile.mkdtemp(prefix="live_bench_"))

    view = in_subprocess(args.project)    # its own process: an EGL context beside MediaPipe's ends the process
    bake = bake_cost(project)
    rows = {}
    files = {"live model, idle": "idle.mp4", "project's model (as dubs), idle": "project.mp4",
             "live model, no look-ahead, idle": "ahead0.mp4", "live model, beside 1 busy process": "busy.mp4"}
    rows["live model, idle"] = live(project, args.seconds, LiveConfig(), out / "idle.mp4")
    rows["project's model (as dubs), idle"] = live(project, args.seconds, LiveConfig(speech_model="project"),
                                                   out / "project.mp4")
    rows["live model, no look-ahead, idle"] = live(project, args.seconds, LiveConfig(lookahead=0), out / "ahead0.mp4")
    load = busy_process()
    try:
        rows["live model, beside 1 busy process"] = live(project, args.seconds, LiveConfig(), out / "busy.mp4")
    finally:
        load.kill()
        load.wait()

    dub = out / "dub.mp4"
    run_job(DubJob(project, SPEECH, dub, DubConfig(end=args.seconds, size="512", torso=False)))
    offline = opening(dub)
    for name, row in rows.items():
        taken = opening(out / files[name])
        first = int(row["first"])
        n = min(len(taken), len(offline) - first)
        row["r"] = pearson(taken[:n], offline[first:first + n])
        row["r_best"], row["lag"] = mouth_sync_r(taken[:n], offline[first:first + n])

    print(f"torch {torch.__version__}; May cpu-draft avatar, {bake['gaussians']:,} Gaussians; "
          f"{args.seconds:g} s of speech per live row; files in {out}")
    print()
    print("| path | face PSNR | SSIM | mouth r | note |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| network (exact, exports) | {bake['exact_psnr']:.2f} dB | {bake['exact_ssim']:.4f} | "
          f"{bake['exact_mouth_r']:.3f} | {bake['frames']} held-out frames |")
    print(f"| baked (live, Viewport) | {bake['baked_psnr']:.2f} dB | {bake['baked_ssim']:.4f} | "
          f"{bake['baked_mouth_r']:.3f} | bake {bake['bake_s']:.1f} s; target within 0.5 dB |")
    print()
    print(f"Viewport frame at 512² (Gaussians + GL upload + draw): network {view['network_fps']:.1f} fps, "
          f"baked {view['baked_fps']:.1f} fps; baked and playing (drawn at {view['playing_scale']:.2f} of the "
          f"resolution, stretched to 512²): {view['playing_fps']:.1f} fps (target >= 25); baked at 256²: "
          f"{view['baked_fps_256']:.1f} fps")
    print()
    print("| live row | latency median | latency p95 | frames/s shown | dropped | late | CPU (of 2 cores) | "
          "mouth r vs offline dub (lag 0; best, lag) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['latency_ms']:.0f} ms | {r['latency_p95_ms']:.0f} ms | {r['fps']:.1f} | "
              f"{r['dropped']} | {r['late']} | {100 * r['cpu']:.0f}% | {r['r']:.3f} ({r['r_best']:.3f}, "
              f"{int(r['lag']):+d}) |")
    print("Targets: median latency <= 150 ms; >= 25 frames/s idle, >= 20 beside a busy process; r >= 0.95.")


if __name__ == "__main__":
    main()
