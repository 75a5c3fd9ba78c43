"""Media I/O speed: probe, sequential decode, cold random seeks, and export.

Run by hand: .venv/bin/python benchmarks/media.py [clip]   (default: ../shared/media/may_13s.mp4)
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.media import AUDIO_RATE, FrameReader, VideoWriter, probe  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "media" / "may_13s.mp4"
SEEKS = 100
EXPORT_SIZE = (512, 512)
EXPORT_FRAMES = 300


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CLIP
    rows: list[tuple[str, str]] = []

    t = time.perf_counter()
    info = probe(path)
    rows.append(("probe (full demux)", f"{(time.perf_counter() - t) * 1000:.1f} ms"))

    with FrameReader(path) as reader:
        t = time.perf_counter()
        n = sum(1 for _ in reader)
        rows.append(("sequential decode (iteration)", f"{n / (time.perf_counter() - t):.0f} fps"))

    with FrameReader(path, cache_bytes=0) as reader:
        rng = random.Random(0)
        latencies = []
        for i in (rng.randrange(len(reader)) for _ in range(SEEKS)):
            t = time.perf_counter()
            reader.read(i)
            latencies.append((time.perf_counter() - t) * 1000)
        rows.append((f"random read, cold cache, median of {SEEKS}", f"{np.median(latencies):.1f} ms"))
        rows.append((f"random read, cold cache, p95 of {SEEKS}", f"{np.percentile(latencies, 95):.1f} ms"))

        frames = [cv2.resize(reader.read(i), EXPORT_SIZE, interpolation=cv2.INTER_AREA)
                  for i in range(min(len(reader), 100))]
    audio = np.zeros(round(EXPORT_FRAMES / reader.fps * AUDIO_RATE), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with VideoWriter(Path(tmp) / "bench.mp4", reader.fps, EXPORT_SIZE, audio=audio) as writer:
            for k in range(EXPORT_FRAMES):
                writer.write(frames[k % len(frames)])
        rows.append((f"export {EXPORT_FRAMES} frames {EXPORT_SIZE[0]}x{EXPORT_SIZE[1]} (x264 medium, crf 18, + AAC)",
                     f"{EXPORT_FRAMES / (time.perf_counter() - t):.1f} fps"))

    print(f"{path.name}: {info.width}x{info.height}, {info.frame_count} frames at {info.fps} fps, "
          f"{info.video_codec}, {info.duration:.2f} s")
    print(f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}, "
          f"{os.cpu_count()} CPUs")
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  result")
    print(f"{'-' * width}  {'-' * 10}")
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")


if __name__ == "__main__":
    main()
