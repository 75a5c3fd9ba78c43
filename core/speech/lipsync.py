"""Speech -> ARKit blendshape animation with no footage: the speech model's mouth and jaw shapes, written in the Live
Link Face CSV layout for artists who animate other rigs."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from core.expression.arkit_csv import from_mediapipe, write_csv
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.media import AUDIO_RATE, load_audio
from core.speech.frontend import Frontend
from core.speech.model import SavedModel, at_frames, load_model, shipped_model
from core.speech.targets import SHAPE_INDEX
from core.tracking.landmarks import BLENDSHAPE_NAMES

FRAME_RATES = (24, 25, 30, 50, 60)  # what animation tools take a blendshape CSV at


def speech_model(path: Path | None = None) -> SavedModel:
    """A speech model trained with ``speech-model train`` at ``path``, or the shipped one."""
    return shipped_model() if path is None else load_model(path)


def estimates(model: SavedModel, frontend: Frontend, audio: np.ndarray, n_frames: int, fps: Fraction | float,
              progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> np.ndarray:
    """float32 [n_frames,K]: the model's z-scores at video frames i/fps for audio float32 [S] at 16 kHz."""
    return at_frames(model.net.predict(frontend.states(audio, progress, cancel)), n_frames, fps)


def blendshape_track(model: SavedModel, frontend: Frontend, audio: np.ndarray, fps: Fraction | float,
                     progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> np.ndarray:
    """float32 [T,52] blendshapes in MediaPipe's order (core.tracking.landmarks.BLENDSHAPE_NAMES), in [0,1], for
    audio float32 [S] at 16 kHz: the speech shapes from the model at the corpus's typical range, the rest 0."""
    n_frames = max(int(np.floor(len(audio) / AUDIO_RATE * float(fps))), 1)
    out = np.zeros((n_frames, len(BLENDSHAPE_NAMES)), np.float32)
    out[:, SHAPE_INDEX] = model.net.speech_shapes(estimates(model, frontend, audio, n_frames, fps, progress, cancel))
    return out


@dataclass
class LipsyncJob:
    """Speech file -> ARKit CSV (Live Link Face layout) at ``fps``."""

    speech: Path
    csv: Path
    fps: float = 30.0
    model: Path | None = None
    name: str = "Lip sync"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> np.ndarray:
        progress(Progress(0.0, "Reading the speech"))
        audio = load_audio(self.speech)
        model = speech_model(self.model)
        frontend = Frontend(model.net.config.frontend, cancel=cancel)
        track = blendshape_track(model, frontend, audio, self.fps, span(progress, 0.05, 0.95), cancel)
        write_csv(self.csv, from_mediapipe(track), self.fps)
        progress(Progress(1.0, f"Wrote {len(track)} frames at {self.fps:g} fps to {self.csv}"))
        return track
