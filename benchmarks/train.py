"""Avatar training benchmark: the whole pipeline per clip, and the avatar beside two trivial baselines.

Run by hand: ``python benchmarks/train.py [--preset cpu-draft] [--clips may_13s katie_8s] [--steps S1 S2]
[--keep DIR]`` (``--keep``: make the projects in DIR and leave them there, e.g. to dub with the avatars).
For each clip: ingest -> track -> audio (default encoder) -> train (the preset) -> eval, in a fresh project, then
the baselines of core.baselines ("mean face", "audio retrieval") on the same held-out frames (the last 20%), and
the avatar once more with its lips driven by the held-out frames' tracked mouths instead of their audio: not a
method (it reads the answer), but the renderer's best case, so the gap to "avatar (ours)" is what the
audio-to-mouth estimate loses.
One table: face-region PSNR, full-frame PSNR, SSIM, centred and raw mouth LMD (px), the mouth-opening Pearson r
at the best lag within ±3 frames, and wall time per stage.

``--load``: each clip's training is then run once more from scratch beside one CPU-bound process the benchmark
starts (a Python busy loop), and its wall time printed beside the idle one (core.threads.ThreadGovernor drops to one
thread while the machine is busy; target within 2.5x of idle).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.features import AudioFeaturesJob  # noqa: E402
from core.avatar.config import preset  # noqa: E402
from core.avatar.evaluate import EvalJob  # noqa: E402
from core.avatar.train import TrainAvatarJob  # noqa: E402
from core.baselines import baselines  # noqa: E402
from core.ingest import IngestJob  # noqa: E402
from core.jobs import run_job  # noqa: E402
from core.layout import AUDIO_FILE  # noqa: E402
from core.media import load_audio  # noqa: E402
from core.project import Project  # noqa: E402
from core.tracking.track import TrackJob, load_tracking  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
METRICS = ("face_psnr", "full_psnr", "ssim", "lmd_centred", "lmd_raw", "mouth_r")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_clip(clip: str, config, workdir: Path) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Scores per method and wall seconds per stage for one clip."""
    project = Project.create(workdir / clip)
    times = {}
    _, times["ingest"] = timed(lambda: run_job(IngestJob(project, MEDIA / f"{clip}.mp4")))
    _, times["track"] = timed(lambda: run_job(TrackJob(project)))
    _, times["audio"] = timed(lambda: run_job(AudioFeaturesJob(project)))
    _, times["train"] = timed(lambda: run_job(TrainAvatarJob(project, config)))
    ours, times["eval"] = timed(lambda: run_job(EvalJob(project)))
    tracked = run_job(EvalJob(project, "tracked"))
    tracking = load_tracking(project)
    fps = Fraction(project.checked_footage().info["fps"])
    base, times["baselines"] = timed(lambda: baselines(project.checked_footage().path,
                                                       load_audio(project.path(AUDIO_FILE)),
                                                       tracking["landmarks"], fps, config.holdout))
    return {"avatar (ours)": ours, **base, "avatar, tracked mouths": tracked}, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-draft")
    parser.add_argument("--clips", nargs="+", default=["may_13s", "katie_8s"])
    parser.add_argument("--steps", type=int, nargs=2, default=None, metavar=("STAGE1", "STAGE2"))
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="make the projects here and keep them")
    parser.add_argument("--load", action="store_true", help="train each clip again beside one busy process")
    args = parser.parse_args()
    config = preset(args.preset)
    if args.steps:
        config = replace(config, stage1_steps=args.steps[0], stage2_steps=args.steps[1])
    print(f"preset {config.preset}: {config.crop_size}² crops, <= {config.max_gaussians} Gaussians, "
          f"{config.stage1_steps} + {config.stage2_steps} steps, backend {config.backend}; "
          f"torch threads {torch.get_num_threads()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            scores, times = run_clip(clip, config, args.keep or Path(tmp))
            if args.load:
                times["train, 1 busy process"] = train_beside_load(args.keep or Path(tmp), clip, config)
            rows.append((clip, scores, times))
            print(f"{clip}: done ({sum(times.values()):.0f} s)", flush=True)

    print("\nHeld-out last 20% of each clip; LMD in px at the footage's resolution; r at the best lag within ±3.")
    print("| clip | method | face PSNR dB | full PSNR dB | SSIM | LMD centred px | LMD raw px | mouth-open r |")
    print("|---|---|---|---|---|---|---|---|")
    for clip, scores, _ in rows:
        for method, s in scores.items():
            print(f"| {clip} | {method} | {s['face_psnr']:.2f} | {s['full_psnr']:.2f} | {s['ssim']:.3f} | "
                  f"{s['lmd_centred']:.2f} | {s['lmd_raw']:.2f} | {s['mouth_r']:.3f} |")
    print("\nBefore rendering: r of the opening that drives the lips (the audio's estimate, or the tracked mouths),")
    print("beside the rendered mouth-opening r above: the first gap is the estimate's, the second the renderer's.")
    print("| clip | lips driven by | drive r | rendered r |")
    print("|---|---|---|---|")
    for clip, scores, _ in rows:
        for method, s in scores.items():
            if "drive_r" in s:   # the avatar's rows; the baselines drive no lips
                print(f"| {clip} | {method} | {s['drive_r']:.3f} | {s['mouth_r']:.3f} |")
    print("\nWall time per stage, s")
    stages = list(rows[0][2])
    print("| clip | " + " | ".join(stages) + " |")
    print("|---|" + "---|" * len(stages))
    for clip, _, times in rows:
        print(f"| {clip} | " + " | ".join(f"{times[s]:.0f}" for s in stages) + " |")
    if args.load:
        print("\nTraining beside one busy process (target within 2.5x of idle)")
        for clip, _, times in rows:
            print(f"| {clip} | idle {times['train']:.0f} s | busy {times['train, 1 busy process']:.0f} s | "
                  f"{times['train, 1 busy process'] / times['train']:.2f}x |")


def train_beside_load(workdir: Path, clip: str, config) -> float:
    """Seconds to train the clip's avatar again from scratch (a copy of its project) beside one busy process."""
    copy = workdir / f"{clip}_busy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(workdir / clip, copy, ignore=shutil.ignore_patterns("avatar*", "avatars", "eval*", "torso*", ".lock*"))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _, seconds = timed(lambda: run_job(TrainAvatarJob(Project.open(copy), config)))
    finally:
        busy.kill()
        busy.wait()
    return seconds


if __name__ == "__main__":
    main()
