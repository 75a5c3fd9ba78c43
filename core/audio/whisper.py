"""Whisper encoder features: the second audio encoder, tiny.en's 384-d states at 50 Hz per video frame.

Whisper's encoder takes exactly 30 s (3000 log-mel frames, 100 Hz) and gives 1500 states (50 Hz); state
``j`` is centred on time ``j / 50``. Audio of 30 s or less is zero-padded to one window and only the states
of real audio are kept. Longer audio is cut into 30 s windows at most 20 s apart, the last one ending at
the audio's end; each state comes from the window where it is furthest from an edge (at least 5 s of real
context on each side of every seam), cross-faded over 1 s at each seam.

Why the cross-fade: the encoder's states depend little on far context (moving what lies 15 s away changes
them ~5 %) but strongly on their position in the window (absolute positional embeddings; the same audio
5 s later in the window gives states ~1x their norm apart, mostly in ~10 of the 384 dimensions). So two
overlapping windows never agree on the states they share, and a hard cut would jump by ~2.4 times a
typical 20 ms step; faded over 1 s the steps stay within the normal range.

The log-mel is computed once over the whole audio (faster-whisper's FeatureExtractor clamps to 80 dB
below the loudest bin of its input), so every window shares one scale.
"""

from __future__ import annotations

import math
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from faster_whisper import WhisperModel

from core.jobs import CancelToken, Progress, ProgressFn
from core.media.audio import AUDIO_RATE
from core.models import WHISPER_TINY_EN, resolve_model

WHISPER_ENCODER_ID = "whisper-tiny.en"
WHISPER_DIM = 384
WHISPER_RATE = 50  # encoder frames per second

_SAMPLES_PER_STATE = AUDIO_RATE // WHISPER_RATE  # 320: two 10 ms mel hops per encoder state
_WINDOW = 1500  # encoder states in Whisper's 30 s input
_MAX_HOP = 1000  # states between window starts (20 s): seams keep >= (1500 - 1000) / 2 = 250 states (5 s) of context
_FADE = 50  # states (1 s) over which one window's states give way to the next's
# float32, not int8: int8 is barely faster but moves the states measurably from float32's, and quantised GEMM
# results can depend on the CPU's instruction set.
_COMPUTE_TYPE = "float32"

_models: dict[str | None, WhisperModel] = {}
_models_lock = threading.Lock()


def whisper_model(model_path: str | Path | None, cancel: CancelToken) -> WhisperModel:
    """The model for a settings path (None: found as core.models finds it), resolved, checked and loaded once
    per path: checking the sha256 of its 78 MB on every call would cost more than short audio's features."""
    key = None if model_path is None else str(model_path)
    with _models_lock:
        if key not in _models:
            path = resolve_model(WHISPER_TINY_EN, model_path, cancel=cancel)
            _models[key] = WhisperModel(str(path.parent), device="cpu", compute_type=_COMPUTE_TYPE,
                                        cpu_threads=torch.get_num_threads())
        return _models[key]


def whisper_features(audio: np.ndarray, n_frames: int, fps: Fraction | float, *, model_path: str | Path | None = None,
                     progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> np.ndarray:
    """float32 [n_frames, 384]: the encoder output resampled (linear interpolation in time) to video frame i at time i/fps.

    ``audio`` is float32 [S] mono at 16 kHz (core.media.load_audio). Frames past the end of the audio hold
    its last state. ``model_path`` is the settings path of model.bin or its folder; the model is otherwise
    found as core.models.resolve_model finds it (call that first to see a download's progress).
    Raises ValueError for empty, non-mono or non-finite audio, or audio shorter than one video frame.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty (0 samples): Whisper features need sound")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"need at least one video frame at a positive rate, got {n_frames} frames at {fps} fps")
    if audio.size < AUDIO_RATE / fps:
        raise ValueError(f"audio is {audio.size} samples long, shorter than one video frame at {fps} fps")
    cancel = cancel or CancelToken()
    cancel.check("Whisper features")
    model = whisper_model(model_path, cancel)

    n_real = math.ceil(audio.size / _SAMPLES_PER_STATE)  # states centred on real audio
    total = max(n_real, _WINDOW)
    padded = np.zeros(total * _SAMPLES_PER_STATE, np.float32)
    padded[: audio.size] = audio
    mel = model.feature_extractor(padded, padding=0)  # [80, 2 * total]

    count = 1 + math.ceil((total - _WINDOW) / _MAX_HOP)
    # Window starts evenly spread, the last window ending at the last state.
    starts = [round(i * (total - _WINDOW) / max(count - 1, 1)) for i in range(count)]
    seams = [(a + _WINDOW + b) / 2 for a, b in zip(starts, starts[1:])]  # middles of the overlaps
    states = np.zeros((total, WHISPER_DIM), np.float32)
    for i, start in enumerate(starts):
        cancel.check("Whisper features")
        window = mel[None, :, 2 * start: 2 * (start + _WINDOW)]  # [1, 80, 3000]
        encoded = np.asarray(model.encode(window), dtype=np.float32)[0]  # [1500, 384]
        j = np.arange(start, start + _WINDOW)  # [1500] the states this window covers
        weight = np.ones(_WINDOW)  # [1500]; the neighbours' ramps sum to 1 across each seam
        if i > 0:
            weight = np.minimum(weight, np.clip((j - seams[i - 1]) / _FADE + 0.5, 0, 1))
        if i < count - 1:
            weight = np.minimum(weight, np.clip((seams[i] - j) / _FADE + 0.5, 0, 1))
        states[start: start + _WINDOW] += weight[:, None] * encoded
        if progress:
            progress(Progress((i + 1) / count, f"Whisper features: window {i + 1} of {count}"))

    states = states[:n_real]  # [n_real, 384]; padding states discarded
    pos = np.minimum(np.arange(n_frames) * (WHISPER_RATE / float(fps)), n_real - 1)  # [n_frames] in states
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, n_real - 1)
    w = (pos - left).astype(np.float32)[:, None]
    return (1 - w) * states[left] + w * states[right]  # [n_frames, 384]
