"""Evaluation of a trained avatar on the held-out frames (the clip's last ``holdout``, never trained on): each is
rendered from its own audio and tracked expression under its own head pose, composited into the real frame,
and scored like the baselines (core.baselines.score). Writes ``eval.json`` and a side-by-side ``eval.mp4``
(real | avatar) with the held-out audio.

``mouth="tracked"`` drives the lips by the held-out frames' own tracked mouths instead of their audio (written to
``eval_tracked.json`` and ``eval_tracked.mp4``): the renderer's best case. Its gap to the audio-driven figures is
what the audio-to-mouth estimate loses, apart from what the renderer loses. ``drive_r`` splits the rest: the
mouth-opening r, before rendering, of what drives the lips (the audio's estimate, or the tracked mouths).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from core.audio.features import load_features
from core.avatar.drive import Driver
from core.baselines import score
from core.errors import ProjectError
from core.fsutil import atomic_write_json
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AUDIO_FILE, eval_files
from core.media import AUDIO_RATE, FrameReader, VideoWriter, load_audio
from core.metrics import mouth_sync_r
from core.project import Project, writes_project
from core.split import training_frames

MOUTHS = ("audio", "tracked")   # what drives the lips in evaluation


@dataclass
class EvalJob:
    project: Project
    mouth: str = "audio"   # one of MOUTHS
    name: str = "Evaluate avatar"

    def __post_init__(self) -> None:
        if self.mouth not in MOUTHS:   # a clear error now rather than after loading the avatar
            raise ValueError(f"mouth must be one of {MOUTHS}, got {self.mouth!r}")

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> dict[str, float]:
        project = self.project
        report_file, video_file = eval_files(self.mouth)
        driver = Driver.load(project)
        features = load_features(project).features if self.mouth == "audio" else None  # [T,D]
        footage = project.checked_footage()
        fps = Fraction(footage.info["fps"])
        t = len(driver.views)
        tail = np.arange(training_frames(t, driver.config.holdout), t)       # the held-out frames, in order
        scored = driver.views.valid[tail]                                      # bool: a face in view
        held = tail[scored]                                                    # the frames scored
        if len(held) == 0:
            raise ProjectError(project.root, "no held-out frame shows a face: nothing to evaluate")
        real, outputs, driven = [], [], []
        with FrameReader(footage.path) as reader:
            for k, i in enumerate(tail.tolist()):
                cancel.check(self.name)
                frame = reader.read(i)
                real.append(frame)
                if not scored[k]:
                    outputs.append(frame)  # no face in view: shown as it is, never rendered over, not scored
                    continue
                mouths = (driver.tracked_mouths(i) if features is None
                          else driver.estimated_mouths(driver.model.audio_window(features, i)))   # [W,81]
                driven.append(driver.model.driven_opening(mouths))
                outputs.append(driver.frame(frame, i, driver.lip_from(mouths), driver.views.expr[i]))
                progress(Progress(0.8 * (k + 1) / len(tail), f"Rendering held-out frame {k + 1}/{len(tail)}"))
        progress(Progress(0.8, "Tracking the renders"))
        scores = score([o for o, v in zip(outputs, scored) if v], [r for r, v in zip(real, scored) if v],
                       driver.views.landmarks[held], fps)
        # Before rendering: how the opening that drives the lips follows the real one. Its gap to mouth_r is what
        # the renderer loses; its gap to 1 what the audio-to-mouth estimate loses.
        scores["drive_r"], lag = mouth_sync_r(np.array(driven), driver.mouths[held, 0])
        scores["drive_lag"] = float(lag)
        cancel.check(self.name)

        progress(Progress(0.9, "Writing the side-by-side video"))
        audio = load_audio(project.path(AUDIO_FILE))
        start, stop = (round(float(tail[0] / fps) * AUDIO_RATE), round(float((tail[-1] + 1) / fps) * AUDIO_RATE))
        h, w = real[0].shape[:2]
        with VideoWriter(project.path(video_file), fps, (2 * w - 2 * w % 2, h - h % 2), audio[start:stop]) as video:
            for a, b in zip(real, outputs):
                video.write(np.concatenate([a, b], axis=1)[:h - h % 2, :2 * w - 2 * w % 2])
        report = {**scores, "frames": int(len(held)), "first_frame": int(tail[0]),
                  "without_face": int(len(tail) - len(held)), "preset": driver.config.preset,
                  "gaussians": len(driver.model), "mouth": self.mouth}
        atomic_write_json(project.path(report_file), report)
        progress(Progress(1.0, f"Evaluated {len(held)} held-out frames: face PSNR {scores['face_psnr']:.2f} dB"))
        return report
