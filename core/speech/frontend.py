"""The speech model's front-end: Whisper tiny.en encoder states at 50 Hz (the encoder's output or the states between
its blocks, core.speech.encoder), computed in fixed blocks so that a stream and a whole file give the same numbers.

Block ``b`` holds states ``[b*block, (b+1)*block)``. Each block is its own encoder pass over a short window: the
``context`` states before it, the block, and ``lookahead`` states after it (audio before 0 and past the end is
silence). A state's value therefore depends on its audio from ``context`` states before to at most
``block - 1 + lookahead`` after, whatever the total length, and live input computes a block as soon as its window
has arrived. Each window has its own log-mel (Whisper's extractor, its 80 dB floor relative to the window's
loudest bin) and sits at the start of Whisper's positional range, as short clips do in Whisper's training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from faster_whisper.feature_extractor import FeatureExtractor

from core.audio.whisper import WHISPER_DIM, WHISPER_RATE
from core.jobs import CancelToken, Progress, ProgressFn
from core.media.audio import AUDIO_RATE
from core.speech.encoder import OUTPUT, whisper_encoder

SAMPLES_PER_STATE = AUDIO_RATE // WHISPER_RATE     # 320
N_MELS = 80


@dataclass(frozen=True)
class FrontendConfig:
    block: int = 5          # states per encoder pass (100 ms)
    context: int = 245      # states of earlier audio each pass sees (4.9 s)
    lookahead: int = 2      # states of later audio each pass sees past its block (40 ms)
    batch: int = 32         # windows per encoder call offline
    mel: bool = True        # the block's own log-mel (Whisper's, two frames per state averaged) beside the states
    layers: tuple[int, ...] = (OUTPUT,)   # the encoder's states read, concatenated (core.speech.encoder's numbers)

    @property
    def dim(self) -> int:
        return WHISPER_DIM * len(self.layers) + (N_MELS if self.mel else 0)

    @property
    def window(self) -> int:
        """States in one encoder pass."""
        return self.context + self.block + self.lookahead

    @property
    def lookahead_s(self) -> float:
        """The most audio past a state's own time that its value depends on."""
        return (self.block - 1 + self.lookahead) / WHISPER_RATE


def n_states(n_samples: int) -> int:
    """States that cover ``n_samples`` of 16 kHz audio."""
    return math.ceil(n_samples / SAMPLES_PER_STATE)


def block_windows(audio: np.ndarray, first: int, count: int, cfg: FrontendConfig, offset: int = 0) -> np.ndarray:
    """float32 [count, window*320]: the samples of blocks ``first .. first+count-1``'s passes, silence outside
    ``audio`` [S], whose first sample is sample ``offset`` of the stream (a live buffer drops what it no longer
    needs)."""
    span = cfg.window * SAMPLES_PER_STATE
    out = np.zeros((count, span), np.float32)
    for k in range(count):
        start = ((first + k) * cfg.block - cfg.context) * SAMPLES_PER_STATE
        lo, hi = max(start, offset), min(start + span, offset + len(audio))
        if hi > lo:
            out[k, lo - start:hi - start] = audio[lo - offset:hi - offset]
    return out


class Frontend:
    """Whisper tiny.en's encoder, loaded once; encodes block windows into their blocks' states."""

    def __init__(self, cfg: FrontendConfig = FrontendConfig(), model_path: str | Path | None = None,
                 cancel: CancelToken | None = None):
        self.cfg = cfg
        self.dim = cfg.dim
        self._encoder = whisper_encoder(model_path, cancel or CancelToken())
        self._mel = FeatureExtractor()

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """float32 [count*block, dim]: the states of the blocks whose windows are ``windows`` [count, window*320]."""
        cfg = self.cfg
        mel = np.stack([self._mel(w, padding=0) for w in windows])                        # float32 [count,80,2*window]
        states = self._encoder(torch.from_numpy(mel), cfg.layers).numpy()                 # [count,window,384*L]
        out = states[:, cfg.context:cfg.context + cfg.block]                              # [count,block,384*L]
        if cfg.mel:
            own = mel[:, :, 2 * cfg.context:2 * (cfg.context + cfg.block)]                 # [count,80,2*block]
            pooled = own.reshape(len(mel), N_MELS, cfg.block, 2).mean(-1).transpose(0, 2, 1)  # [count,block,80]
            out = np.concatenate([out, pooled.astype(np.float32)], axis=2)
        return out.reshape(-1, cfg.dim)

    def states(self, audio: np.ndarray, progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> np.ndarray:
        """float32 [n_states(S), dim] of audio float32 [S] at 16 kHz."""
        cfg = self.cfg
        total = n_states(len(audio))
        blocks = math.ceil(total / cfg.block)
        out = np.empty((blocks * cfg.block, cfg.dim), np.float32)
        for first in range(0, blocks, cfg.batch):
            if cancel is not None:
                cancel.check("Speech features")
            count = min(cfg.batch, blocks - first)
            out[first * cfg.block:(first + count) * cfg.block] = self.encode(block_windows(audio, first, count, cfg))
            if progress:
                progress(Progress((first + count) / blocks, "Speech features"))
        return out[:total]
