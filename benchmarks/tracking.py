"""Tracking speed and quality: landmarks (MediaPipe), head pose fit (Eq. 7-8), Head-Sync Stabilizer (Eq. 9-12).

Run by hand: .venv/bin/python benchmarks/tracking.py [clip]   (default: ../shared/media/may_13s.mp4)
Prints frames/s per step, the total (the budget is 60 s for may_13s on 2 cores), how far the template
drawn with the stabilized pose lands from the rigid landmarks, and the pose jitter before and after.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.media import FrameReader  # noqa: E402
from core.tracking.pose import euler_degrees, fit_pose, head_vertices, project  # noqa: E402
from core.tracking.stabilize import bundle_adjust, track_keypoints  # noqa: E402
from core.tracking.template import RIGID_LANDMARKS  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "media" / "may_13s.mp4"
BUDGET_S = 60.0


def _jitter(rot: np.ndarray, trans: np.ndarray) -> tuple[float, float]:
    """Mean absolute second difference of yaw/pitch/roll (deg) and of translation (template units)."""
    return (float(np.abs(np.diff(euler_degrees(rot), 2, axis=0)).mean()),
            float(np.abs(np.diff(trans, 2, axis=0)).mean()))


def _reproj(points: np.ndarray, rot: np.ndarray, trans: np.ndarray, fit, landmarks: np.ndarray,
            valid: np.ndarray) -> float:
    """Mean distance (px) of the rigid landmarks from the head points drawn with a pose."""
    uv = project(points, rot, trans, fit.focal, fit.cx, fit.cy)
    error = np.linalg.norm(uv[:, RIGID_LANDMARKS] - landmarks[:, RIGID_LANDMARKS], axis=-1)
    return float(error[valid].mean())


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CLIP
    try:
        from core.tracking.landmarks import detect_landmarks
    except ImportError:
        sys.exit("core.tracking.landmarks is missing: nothing to fit the pose to")
    rows: list[tuple[str, float, int]] = []  # step, seconds, frames

    with FrameReader(path) as reader:
        n = len(reader)
        t = time.perf_counter()
        marks = detect_landmarks(reader)
        rows.append(("landmarks (MediaPipe)", time.perf_counter() - t, n))
        landmarks, valid = marks.landmarks, marks.valid

        t = time.perf_counter()
        fit = fit_pose(landmarks, valid, reader.size)
        rows.append(("pose fit (Eq. 7-8)", time.perf_counter() - t, n))

        t = time.perf_counter()
        tracks = track_keypoints(reader.read, landmarks, valid)
        rows.append(("  keypoints: flow + Lucas-Kanade (Eq. 9-10)", time.perf_counter() - t, n))
        t = time.perf_counter()
        stable = bundle_adjust(tracks, landmarks, valid, fit)
        rows.append(("  bundle adjustment (Eq. 11-12)", time.perf_counter() - t, n))
    rows.append(("stabilization (the two above)", rows[-1][1] + rows[-2][1], n))
    total = sum(seconds for name, seconds, _ in rows[:3]) + rows[3][1]

    print(f"{path.name}: {n} frames {reader.size[0]}x{reader.size[1]}, {int(valid.sum())} valid; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  {'frames/s':>9}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 9}")
    for name, seconds, frames in rows:
        print(f"{name:<{width}}  {seconds:>8.2f}  {frames / seconds:>9.1f}")
    print(f"{'total':<{width}}  {total:>8.2f}  {n / total:>9.1f}   (budget {BUDGET_S:.0f} s: "
          f"{'ok' if total <= BUDGET_S else 'OVER'})")

    print(f"\nfocal {fit.focal:.0f} px ({fit.focal / reader.size[0]:.2f} x width), template scale {fit.scale:.3f}, "
          f"{stable.keypoints} keypoints ({len(tracks)} picked, {len(tracks.frame)} observations)")
    canonical = _reproj(fit.scale * head_vertices(), fit.rot, fit.trans, fit, landmarks, valid)
    raw = _reproj(fit.template, fit.rot, fit.trans, fit, landmarks, valid)
    steady = _reproj(fit.template, stable.rot, stable.trans, fit, landmarks, valid)
    print(f"rigid landmarks vs template, mean px: raw fit {raw:.2f}, stabilized {steady:.2f} (limit 3), "
          f"canonical shape with the raw fit {canonical:.2f}")
    jr, js = _jitter(fit.rot, fit.trans), _jitter(stable.rot, stable.trans)
    print(f"jitter (mean |2nd difference|): rotation {jr[0]:.3f} -> {js[0]:.3f} deg ({jr[0] / js[0]:.1f}x), "
          f"translation {jr[1]:.4f} -> {js[1]:.4f} ({jr[1] / js[1]:.1f}x); limit: half")


if __name__ == "__main__":
    main()
