"""Evaluation of a trained avatar on the held-out frames (the clip's last ``holdout``, never trained on): each is
rendered from its own audio and tracked expression under its own head pose, composited into the real frame,
and scored like the baselines (core.baselines.score). Writes ``eval.json`` and a side-by-side ``eval.mp4``
(real | avatar) with the held-out audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from core.audio.features import load_features
from core.audio.train_ave import training_frames
from core.avatar.drive import Driver
from core.baselines import score
from core.fsutil import atomic_write_json
from core.ingest import AUDIO_FILE
from core.jobs import CancelToken, Progress, ProgressFn
from core.media import AUDIO_RATE, FrameReader, VideoWriter, load_audio
from core.project import Project

EVAL_FILE = "eval.json"
VIDEO_FILE = "eval.mp4"


@dataclass
class EvalJob:
    project: Project
    name: str = "Evaluate avatar"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> dict[str, float]:
        project = self.project
        driver = Driver.load(project)
        features = load_features(project).features
        footage = project.checked_footage()
        fps = Fraction(footage.info["fps"])
        t = len(driver.views)
        held = np.arange(training_frames(t, driver.config.holdout), t)
        real, outputs = [], []
        with FrameReader(footage.path) as reader:
            for k, i in enumerate(held):
                cancel.check(self.name)
                frame = reader.read(int(i))
                real.append(frame)
                audio = driver.model.audio_window(features, int(i))                   # [F,D]
                outputs.append(driver.frame(frame, int(i), audio, driver.views.expr[i]))
                progress(Progress(0.8 * (k + 1) / len(held), f"Rendering held-out frame {k + 1}/{len(held)}"))
        progress(Progress(0.8, "Tracking the renders"))
        scores = score(outputs, real, driver.views.landmarks[held], fps)
        cancel.check(self.name)

        progress(Progress(0.9, "Writing the side-by-side video"))
        audio = load_audio(project.path(AUDIO_FILE))
        start, stop = (round(float(held[0] / fps) * AUDIO_RATE), round(float((held[-1] + 1) / fps) * AUDIO_RATE))
        h, w = real[0].shape[:2]
        with VideoWriter(project.path(VIDEO_FILE), fps, (2 * w - 2 * w % 2, h - h % 2), audio[start:stop]) as video:
            for a, b in zip(real, outputs):
                video.write(np.concatenate([a, b], axis=1)[:h - h % 2, :2 * w - 2 * w % 2])
        report = {**scores, "frames": int(len(held)), "first_frame": int(held[0]), "preset": driver.config.preset,
                  "gaussians": len(driver.model)}
        atomic_write_json(project.path(EVAL_FILE), report)
        progress(Progress(1.0, f"Evaluated {len(held)} held-out frames: face PSNR {scores['face_psnr']:.2f} dB"))
        return report
