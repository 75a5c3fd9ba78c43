"""The speech-to-face network, its file and the shipped weights.

Front-end states [N,D] at 50 Hz -> per state the speaker-normalised mouth (z-scores of
core.speech.targets.OUTPUTS) -> per video frame by linear interpolation at the frame's own time. The temporal
model is one linear 1-D convolution over the states, ``past`` taps back and ``future`` ahead, fitted in closed form
(core.speech.train): across held-out speakers it generalises better than deeper stacks trained by gradient descent
on this much speech. Its look-ahead is bounded (the front-end's plus ``future * dilation`` states), so a stream runs
the same weights.

A model file is a ``torch.save`` dict of tensors and JSON strings only, read with ``weights_only=True``; the shipped
one is checked against the sha256 recorded beside it before it is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.audio.whisper import WHISPER_RATE
from core.config import from_dict, to_dict
from core.errors import AvatarStudioError
from core.fsutil import atomic_path
from core.project import file_sha256
from core.speech.frontend import FrontendConfig
from core.speech.targets import OUTPUTS, SPEECH_SHAPES

SHIPPED_FILE = "speech_model.pt"      # in resources/models/, with SHIPPED_FILE + ".sha256" and the model card
LIVE_FILE = "speech_model_live.pt"    # the live model (LIVE_MODEL's config), beside it with its hash and card


@dataclass(frozen=True)
class SpeechModelConfig:
    frontend: FrontendConfig = FrontendConfig(layers=(2, 3))   # the residual stream after Whisper's blocks 2 and 3
    past: int = 2             # taps back
    future: int = 2           # taps ahead
    dilation: int = 2         # states between taps
    outputs: tuple[str, ...] = OUTPUTS

    @property
    def kernel(self) -> int:
        return self.past + 1 + self.future

    @property
    def lookahead_s(self) -> float:
        """The most speech past a frame's time that its output depends on (front-end and network)."""
        return self.frontend.lookahead_s + self.future * self.dilation / WHISPER_RATE


# The live model: a 0.9 s window of earlier sound per encoder pass instead of 4.9 s, 60 ms blocks, 20 ms of
# front-end look-ahead and one network tap ahead (40 ms): 140 ms from a frame's sound to its mouth instead of 240,
# and 40% of the offline model's computing; its card has its speaker-disjoint r.
LIVE_MODEL = SpeechModelConfig(frontend=FrontendConfig(block=3, context=45, lookahead=1, layers=(2, 3)), future=1)


class SpeechToFace(nn.Module):
    """States [B,N,D] -> mouth z-scores [B,N,K]. Buffers: the input statistics, and each output's typical
    within-clip level and spread in its own units (to write absolute blendshapes)."""

    def __init__(self, config: SpeechModelConfig = SpeechModelConfig()):
        super().__init__()
        self.config = config
        k, in_dim = len(config.outputs), config.frontend.dim
        self.register_buffer("mean", torch.zeros(in_dim))       # [D]
        self.register_buffer("std", torch.ones(in_dim))         # [D]
        self.register_buffer("level", torch.zeros(k))           # [K] typical clip mean, own units
        self.register_buffer("spread", torch.ones(k))           # [K] typical clip std, own units
        self.register_buffer("gain", torch.ones(k))             # [K] the spread of its estimates on training speech
        self.linear = nn.Conv1d(in_dim, k, config.kernel, dilation=config.dilation)

    def forward(self, states: Tensor) -> Tensor:
        """z-scores [B,N,K] of states [B,N,D]; the edge states repeat for the taps that reach past them."""
        c = self.config
        x = ((states - self.mean) / self.std).transpose(1, 2)                            # [B,D,N]
        x = F.pad(x, (c.past * c.dilation, c.future * c.dilation), mode="replicate")     # [B,D,N+span]
        return self.linear(x).transpose(1, 2)                                            # [B,N,K]

    def predict(self, states: np.ndarray) -> np.ndarray:
        """float32 [N,K] z-scores of states float32 [N,D] (inference mode)."""
        self.eval()
        with torch.inference_mode():
            return self(torch.from_numpy(np.ascontiguousarray(states, np.float32))[None])[0].numpy()

    def absolute(self, z: np.ndarray) -> np.ndarray:
        """float32 [...,K]: estimated z-scores in each output's own units at the corpus's typical level and spread
        (estimates vary less than what they estimate: ``gain`` restores their typical range)."""
        return (z / self.gain.numpy() * self.spread.numpy() + self.level.numpy()).astype(np.float32)

    def speech_shapes(self, z: np.ndarray) -> np.ndarray:
        """float32 [n,S]: the SPEECH_SHAPES blendshapes (in [0,1]) of estimated z-scores [n,K], at the corpus's
        typical range."""
        columns = [self.config.outputs.index(name) for name in SPEECH_SHAPES]
        return np.clip(self.absolute(z)[:, columns], 0.0, 1.0)


def frame_positions(n_frames: int, fps: Fraction | float) -> np.ndarray:
    """float64 [n_frames]: where video frame i (at time i/fps) lies among the states (state j at time j/50 s)."""
    return np.arange(n_frames) * (WHISPER_RATE / float(fps))


def between(pos: np.ndarray, n_states: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For positions [F] within states 0..n_states-1: the state at or before each, the one after (the last one
    repeats), and the weight of the one after, float32 [F]."""
    left = np.floor(pos).astype(np.int64)
    return left, np.minimum(left + 1, n_states - 1), (pos - left).astype(np.float32)


def at_frames(per_state: np.ndarray, n_frames: int, fps: Fraction | float) -> np.ndarray:
    """[n_frames, K] of per-state values [N,K]: linear interpolation at frame times i/fps, the last state held past
    the end."""
    left, right, w = between(np.minimum(frame_positions(n_frames, fps), len(per_state) - 1), len(per_state))
    return (1 - w[:, None]) * per_state[left] + w[:, None] * per_state[right]


@dataclass
class SavedModel:
    net: SpeechToFace
    card: dict = field(default_factory=dict)   # the model card's facts (clips, figures, config)


def save_model(path: Path, net: SpeechToFace, card: dict) -> str:
    """Write the model (config, weights, card) atomically; returns its sha256."""
    with atomic_path(path) as tmp:
        torch.save({"format": "avatar-studio speech model 1", "config": json.dumps(to_dict(net.config)),
                    "card": json.dumps(card), "state": net.state_dict()}, tmp)
    return file_sha256(path)


def load_model(path: Path, sha256: str | None = None) -> SavedModel:
    """The model at ``path``; with ``sha256``, refused unless the file has that hash. Tensors only
    (``weights_only``): a file that is not a speech model is refused with a message, never executed."""
    path = Path(path)
    if not path.is_file():
        raise AvatarStudioError(f"{path}: no speech model there (train one with 'avatar-studio-cli speech-model "
                                "train' or reinstall the studio)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise AvatarStudioError(f"{path}: the speech model's file does not match its recorded sha256 (damaged or "
                                "replaced): reinstall the studio, or retrain it with 'avatar-studio-cli speech-model "
                                "train'")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        config = from_dict(SpeechModelConfig, json.loads(saved["config"]))
        net = SpeechToFace(config)
        net.load_state_dict(saved["state"])
        return SavedModel(net.eval(), json.loads(saved["card"]))
    except Exception as e:  # any unreadable content, whatever the unpickler or torch raises
        raise AvatarStudioError(f"{path}: not a readable speech model ({type(e).__name__}: {e}); retrain it with "
                                "'avatar-studio-cli speech-model train' or reinstall the studio") from e


def _shipped(name: str = SHIPPED_FILE) -> tuple[Path, str]:
    """A shipped model's path and its recorded sha256."""
    root = Path(str(resources.files("resources") / "models"))
    digest_file = root / (name + ".sha256")
    if not digest_file.is_file():
        raise AvatarStudioError(f"{digest_file}: the shipped speech model's hash is missing: reinstall the studio")
    return root / name, digest_file.read_text().split()[0]


def shipped_model() -> SavedModel:
    """The speech model shipped in resources/models, checked against its recorded sha256."""
    return load_model(*_shipped())


def live_model() -> SavedModel:
    """The shipped live model (``LIVE_MODEL``'s config: a shorter look-ahead, less computing), checked likewise."""
    return load_model(*_shipped(LIVE_FILE))


def model_digest(path: Path | None) -> str:
    """The sha256 of a speech model file (None: the shipped one's, as recorded): what its results were made with."""
    return _shipped()[1] if path is None else file_sha256(path)
