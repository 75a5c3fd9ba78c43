"""Dubbing benchmark: how fast a 60 s dub is made, how visible its seam is, and whether the lips follow a voice
the avatar never heard.

Run by hand on a May project with a trained avatar::

    python benchmarks/train.py --clips may_13s --keep DIR     # makes DIR/may_13s (cpu-draft)
    python benchmarks/dub.py --project DIR/may_13s

1. speech_en_60s_16k.wav (60 s against 13 s of footage) dubbed at 512², defaults otherwise (watermark on):
   end-to-end frames per second (features, render, composite, encode; target >= 10 on CPU) and the split.
2. katie_8s.mp4's audio driving the May avatar (watermark off), then:
   - lip sync: the dub's mouth opening, tracked by our tracker, against the opening tracked on katie_8s.mp4
     itself: Pearson r at the best lag within ±3 frames (target >= 0.5). For scale, the same for the
     footage as it is (the May frames the dub shows, undriven), and for the avatar's own audio-to-mouth
     estimate before rendering;
   - the seam: core.metrics.seam_errors, the mean |dub - source| on a ring 2 px either side of the blend
     mask's outer edge over that in the background (encoding alone: about 1; target <= 2).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.features import load_encoder  # noqa: E402
from core.audio.mouth import mouth_opening  # noqa: E402
from core.avatar.drive import Driver  # noqa: E402
from core.baselines import FrameList  # noqa: E402
from core.compose.portrait import portrait_mask  # noqa: E402
from core.dub import DubConfig, DubJob, pingpong  # noqa: E402
from core.jobs import run_job  # noqa: E402
from core.media import FrameReader, load_audio  # noqa: E402
from core.metrics import mouth_sync_r, seam_errors  # noqa: E402
from core.project import Project  # noqa: E402
from core.tracking.landmarks import detect_landmarks  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"


def speed(project: Project, out: Path) -> dict[str, float]:
    """The 60 s dub at 512²: wall seconds end to end and in the job's frame loop."""
    loop: dict[str, float] = {}

    def report(p) -> None:
        if p.metrics and "loop_start" not in loop:
            loop["loop_start"] = time.perf_counter()

    t = time.perf_counter()
    result = run_job(DubJob(project, MEDIA / "speech_en_60s_16k.wav", out, DubConfig(size="512")), report)
    total = time.perf_counter() - t
    return {"frames": result.frames, "total_s": total, "before_frames_s": loop["loop_start"] - t,
            "fps": result.frames / total}


def lips_and_seam(project: Project, out: Path) -> dict[str, float]:
    """katie_8s's audio driving the avatar: lip-sync r of the dub, of the footage as is and of the mouth
    estimate; the seam ratio over the same dub."""
    katie = MEDIA / "katie_8s.mp4"
    config = DubConfig(watermark=False)
    run_job(DubJob(project, katie, out, config))
    with FrameReader(katie) as reader:
        fps = reader.fps
        real_open = mouth_opening(detect_landmarks(reader).landmarks)                    # [K]
    with FrameReader(out) as reader:
        dubbed = list(reader)
    dub_open = mouth_opening(detect_landmarks(FrameList(dubbed, Fraction(fps))).landmarks)

    driver = Driver.load(project)
    n, t = len(dubbed), len(driver.views)
    shown = pingpong(np.arange(n), t)                                                    # [n] source frames
    footage_open = mouth_opening(driver.views.landmarks[shown])
    features = load_encoder(project).features(load_audio(katie), n, Fraction(fps))
    model = driver.model
    with torch.inference_mode():
        estimate = np.array([model.mouth(torch.from_numpy(model.audio_window(features, i)))[model.mouth_centre, 0]
                             .item() for i in range(n)])

    errors = []
    with FrameReader(project.checked_footage().path) as source:
        for k, frame in enumerate(dubbed):
            s = int(shown[k])
            real = source.read(s)
            blend = portrait_mask(driver.views.landmarks[s], (real.shape[1], real.shape[0]), config.portrait)
            errors.append(seam_errors(frame, real, blend))
    ring, background = np.mean(errors, axis=0)
    m = min(n, len(real_open))
    return {"dub_r": mouth_sync_r(dub_open[:m], real_open[:m])[0],
            "footage_r": mouth_sync_r(footage_open[:m], real_open[:m])[0],
            "estimate_r": mouth_sync_r(estimate[:m], real_open[:m])[0],
            "ring": float(ring), "background": float(background), "seam": float(ring / background)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a May project with a trained avatar")
    args = parser.parse_args()
    project = Project.open(args.project)
    device = "CUDA" if Driver.load(project).config.backend == "cuda" else "CPU"
    print(f"project {project.name}, {device}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        s = speed(project, Path(tmp) / "dub60.mp4")
        q = lips_and_seam(project, Path(tmp) / "katie.mp4")

    print("\n1. speech_en_60s_16k.wav dubbed at 512² (target >= 10 frames/s on CPU)")
    print("| frames | end to end s | before the first frame s | frames/s end to end |")
    print("|---|---|---|---|")
    print(f"| {s['frames']} | {s['total_s']:.1f} | {s['before_frames_s']:.1f} | {s['fps']:.1f} |")
    print("\n2. katie_8s.mp4's audio driving the avatar: mouth-opening r against katie's own (best lag within ±3)")
    print("| dub (tracked) | footage as is | the avatar's audio-to-mouth estimate |")
    print("|---|---|---|")
    print(f"| {q['dub_r']:.3f} | {q['footage_r']:.3f} | {q['estimate_r']:.3f} |")
    print("\n   The seam: mean |dub - source| in grey levels (target: ring <= 2 x background)")
    print("| ring at the mask edge | background | ratio |")
    print("|---|---|---|")
    print(f"| {q['ring']:.2f} | {q['background']:.2f} | {q['seam']:.2f} |")


if __name__ == "__main__":
    main()
