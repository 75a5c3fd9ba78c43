"""Audio features benchmark: per-subject AVE training figures (held-out), extraction speed, streaming cost.

Run by hand: ``python benchmarks/audio.py [--steps N] [--clips may_13s katie_8s] [--seeds 0 1 2 3]``. One run
prints:
1. for each clip and training seed: the audio-visual encoder trained on its first 80% (ingest -> track -> audio
   stage), scored on the last 20%: mouth-opening Pearson r, the sync offset found on the held-out audio and on
   the same audio delayed by 5 frames, the sync score margin, and wall times;
2. offline extraction speed as multiples of real time for each encoder on 60 s of speech;
3. the streaming extractor's compute per 40 ms chunk and its end-to-end latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.features import AudioConfig, AudioFeaturesJob, AveEncoder, WhisperEncoder, sync_check  # noqa: E402
from core.audio.mel import frames_for_audio  # noqa: E402
from core.audio.stream import StreamingFeatures  # noqa: E402
from core.audio.ave import AVE_DIM  # noqa: E402
from core.audio.train_ave import mouth_score  # noqa: E402
from core.ingest import IngestJob  # noqa: E402
from core.jobs import run_job  # noqa: E402
from core.media import load_audio  # noqa: E402
from core.project import Project  # noqa: E402
from core.split import training_frames  # noqa: E402
from core.tracking.track import TrackJob, load_tracking  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
SHIFT = 5  # frames the audio is delayed by for the shifted-offset figure


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def train_clip(clip: str, config: AudioConfig, root: Path) -> dict[str, float]:
    """The audio stage's figures for a new project at ``root`` made from ``clip``."""
    project = Project.create(root)
    _, t_ingest = timed(lambda: run_job(IngestJob(project, MEDIA / f"{clip}.mp4")))
    _, t_track = timed(lambda: run_job(TrackJob(project)))
    result, t_audio = timed(lambda: run_job(AudioFeaturesJob(project, config)))

    # The same footage with its audio delayed by SHIFT frames: the sync model should find +SHIFT.
    shifted_report = sync_check(project, SHIFT)
    landmarks = load_tracking(project)["landmarks"]

    # The same linear mouth readout on Whisper's states alone (the stage's report has AVE and AVE+Whisper):
    # the default features are [AVE | Whisper].
    whisper = result.features[:, AVE_DIM:]                                            # [T,384]
    mouth_r_whisper = mouth_score(whisper, landmarks, config.train.holdout)
    return {**result.report, "mouth_r_whisper": mouth_r_whisper, "offset_shift": shifted_report["offset_frames"],
            "ingest_s": t_ingest,
            "track_s": t_track, "audio_s": t_audio, "frames": len(landmarks),
            "held_out": len(landmarks) - training_frames(len(landmarks), config.train.holdout)}


def extraction_speed(encoder, audio: np.ndarray, repeats: int = 3) -> float:
    n = frames_for_audio(len(audio), 25)
    encoder.features(audio[:16000], 25, Fraction(25))  # warm up (model load for Whisper)
    best = min(timed(lambda: encoder.features(audio, n, Fraction(25)))[1] for _ in range(repeats))
    return len(audio) / 16000 / best


def streaming_cost(encoder: AveEncoder, audio: np.ndarray) -> tuple[float, float, float]:
    """Median and p95 ms of compute per 40 ms pushed chunk, and the lookahead in ms."""
    stream = StreamingFeatures(encoder, 25)
    chunk = 640
    costs = []
    for start in range(0, len(audio) - chunk, chunk):
        t = time.perf_counter()
        stream.push(audio[start:start + chunk])
        costs.append((time.perf_counter() - t) * 1000)
    costs = np.array(costs[25:])  # the first second warms caches
    return float(np.median(costs)), float(np.percentile(costs, 95)), stream.latency_s * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="AVE training steps (default: the config's)")
    ap.add_argument("--clips", nargs="*", default=["may_13s", "katie_8s"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[AudioConfig().train.seed],
                    help="AVE training seeds, one row each (default: the config's)")
    args = ap.parse_args()
    config = AudioConfig(encoder="ave+whisper")
    if args.steps:
        config = replace(config, train=replace(config.train, steps=args.steps))
    print(f"torch threads {torch.get_num_threads()}, AVE steps {config.train.steps}, width {config.train.width}")

    rows = {}
    root = None
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            for seed in args.seeds:
                seeded = replace(config, train=replace(config.train, seed=seed))
                root = Path(tmp) / f"{clip}_seed{seed}"
                rows[clip, seed] = train_clip(clip, seeded, root)
        ave = AveEncoder.load(root / "ave.pt") if root else None

    print("\n1. Audio-visual encoder trained per subject, scored on the held-out last 20%")
    print("Mouth-open r: Pearson r of a linear readout (core.audio.train_ave.mouth_probe, fitted on the training")
    print("frames) against the tracked opening on the held-out frames, from the AVE, Whisper, or both (one")
    print("readout each, averaged).")
    print("| clip | seed | frames (held out) | mouth-open r AVE | r Whisper | r both | offset found "
          "| offset, audio +5 frames | sync margin | ingest s | track s | audio stage s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (clip, seed), r in rows.items():
        print(f"| {clip} | {seed} | {r['frames']} ({r['held_out']}) | {r['mouth_r_ave']:.3f} "
              f"| {r['mouth_r_whisper']:.3f} | {r['mouth_r']:.3f} | {r['offset_frames']:+.0f} | {r['offset_shift']:+.0f} "
              f"| {r['sync_score']:.3f} | {r['ingest_s']:.1f} | {r['track_s']:.1f} | {r['audio_s']:.1f} |")
    if len(args.seeds) > 1:
        print("\n| clip | seeds | mouth-open r both: min | mean | max |")
        print("|---|---|---|---|---|")
        for clip in args.clips:
            both = np.array([rows[clip, seed]["mouth_r"] for seed in args.seeds])
            print(f"| {clip} | {len(both)} | {both.min():.3f} | {both.mean():.3f} | {both.max():.3f} |")

    speech = load_audio(MEDIA / "speech_en_60s_16k.wav")
    if ave is None:
        from core.audio.ave import AudioEncoder
        from core.audio.features import AVE_MEL
        ave = AveEncoder(AudioEncoder(config.train.width).eval(), AVE_MEL)
    print("\n2. Offline extraction, 60 s of speech (multiples of real time)")
    print("| encoder | x real time |")
    print("|---|---|")
    print(f"| ave (width {config.train.width}) | {extraction_speed(ave, speech):.0f} |")
    print(f"| whisper tiny.en | {extraction_speed(WhisperEncoder(), speech, repeats=1):.0f} |")

    med, p95, look = streaming_cost(ave, speech)
    print("\n3. Streaming (AVE), 40 ms chunks")
    print("| compute per chunk, median ms | p95 ms | lookahead ms | end-to-end latency ms (chunk + lookahead + compute) |")
    print("|---|---|---|---|")
    print(f"| {med:.2f} | {p95:.2f} | {look:.1f} | {40 + look + med:.1f} |")


if __name__ == "__main__":
    main()
