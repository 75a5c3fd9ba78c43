"""The Torso Restorer against today's blend and OpenCV inpainting, on held-out frames.

Run by hand on tracked projects (copies are made; the projects are not changed)::

    python benchmarks/train.py --clips may_13s katie_8s --keep DIR
    python benchmarks/torso.py --projects DIR/may_13s DIR/katie_8s [--steps N]

For each clip: the restorer is trained on the training frames (``TorsoJob``, timed). Then, on held-out frames
(the clip's last 20 %, every second one), the band around the face's lower edge (the face mask grown by the render
margin, minus the face mask) is filled from the frame whose mouth opening differs most (aligned on the rigid
landmarks): the mismatched jaw a dub leaves. Band PSNR against the real pixels, in the 256² lower-face crop, for:
the mismatched band left as it is (today's blend), OpenCV's Telea inpainting of the band, and the restorer.
Side-by-side crops of the frame with the largest mismatch go to test-artifacts/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.mouth import mouth_opening  # noqa: E402
from core.avatar.torso import TorsoConfig, TorsoJob, load_torso, network_input, sample  # noqa: E402
from core.baselines import similarity  # noqa: E402
from core.jobs import run_job  # noqa: E402
from core.media import FrameReader  # noqa: E402
from core.project import Project  # noqa: E402
from core.split import training_frames  # noqa: E402
from core.tracking.track import load_tracking  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = float(((a - b) ** 2)[where].mean())
    return 10 * np.log10(1.0 / max(err, 1e-10))


def clip_rows(src: Path, tmp: Path, steps: int) -> tuple[float, list[float], list[float], list[float]]:
    root = tmp / src.name
    shutil.copytree(src, root)
    project = Project.open(root)
    began = time.perf_counter()
    run_job(TorsoJob(project, TorsoConfig(steps=steps)))
    seconds = time.perf_counter() - began
    net, config = load_torso(project)
    tracking = load_tracking(project)
    marks, valid = tracking["landmarks"], tracking["valid"].astype(bool)
    opening = mouth_opening(marks)                                                     # [T]
    held = [t for t in range(training_frames(len(valid), 0.2), len(valid)) if valid[t]][::2]
    none, telea, restored = [], [], []
    worst = None
    with FrameReader(project.checked_footage().path) as reader:
        for t in held:
            s = int(np.argmax(np.abs(opening - opening[t]) * valid))                  # the most different mouth
            frame, other = reader.read(t), reader.read(s)
            h, w = frame.shape[:2]
            aligned = cv2.warpAffine(other, similarity(marks[s], marks[t]), (w, h), borderMode=cv2.BORDER_REFLECT)
            truth, band, m = sample(frame, marks[t], config, config.margin)
            mismatched = cv2.warpAffine(aligned, m, (config.size, config.size), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
            mixed = np.where(band[..., None], mismatched, truth)                       # [S,S,3] the mismatched band
            inpainted = cv2.inpaint(np.round(mixed * 255).astype(np.uint8), band.astype(np.uint8), 5,
                                    cv2.INPAINT_TELEA).astype(np.float32) / 255.0
            with torch.inference_mode():
                pred = net(network_input(mixed, band)[None])[0].numpy().transpose(1, 2, 0)
            out = np.where(band[..., None], pred, mixed)
            none.append(psnr(mixed, truth, band))
            telea.append(psnr(inpainted, truth, band))
            restored.append(psnr(out, truth, band))
            gap = abs(opening[s] - opening[t])
            if worst is None or gap > worst[0]:
                worst = (gap, np.concatenate([mixed, inpainted, out, truth], axis=1))
    ARTIFACTS.mkdir(exist_ok=True)
    cv2.imwrite(str(ARTIFACTS / f"torso_{src.name}_mismatch_telea_restorer_real.png"),
                cv2.cvtColor(np.round(worst[1] * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return seconds, none, telea, restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=Path, nargs="+", required=True, help="tracked projects")
    parser.add_argument("--steps", type=int, default=TorsoConfig().steps, help="the restorer's training steps")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in args.projects:
            rows.append((src.name, *clip_rows(src, Path(tmp), args.steps)))
    print(f"Band PSNR (dB) on held-out frames, the band filled from the most different mouth; restorer "
          f"{args.steps} steps, torch threads {torch.get_num_threads()}")
    print("| clip | frames | training s | mismatched band (today) | Telea | Torso Restorer |")
    print("|---|---|---|---|---|---|")
    for name, seconds, none, telea, restored in rows:
        print(f"| {name} | {len(none)} | {seconds:.0f} | {np.mean(none):.2f} | {np.mean(telea):.2f} | "
              f"{np.mean(restored):.2f} |")


if __name__ == "__main__":
    main()
