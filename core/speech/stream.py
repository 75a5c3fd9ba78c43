"""The speech model chunk by chunk: push microphone audio of any size, get each video frame's mouth as soon as the
audio it depends on has arrived (``latency_s`` past the frame's time), equal to the offline output.

Front-end blocks are computed once their window has arrived (core.speech.frontend); the network runs on the states
around each new output, the start of the stream padded as the offline pass pads it; ``flush`` ends the stream with
the silence and edge padding the offline pass uses. Memory stays flat: only the states the next outputs need and
the current block's samples are kept.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from core.audio.whisper import WHISPER_RATE
from core.speech.frontend import SAMPLES_PER_STATE, Frontend, block_windows, n_states
from core.speech.model import SpeechToFace


class StreamingSpeech:
    """Mouth z-scores [n,K] per video frame of one audio stream at ``fps``, frame by frame from frame 0."""

    def __init__(self, net: SpeechToFace, frontend: Frontend, fps: Fraction | float):
        self.net, self.frontend = net.eval(), frontend
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        m = net.config
        self._back = m.past * m.dilation                        # states an output reads before its own
        self._ahead = m.future * m.dilation                     # and after
        self._audio = np.zeros(0, np.float32)                   # samples from _audio_start on
        self._audio_start = 0
        self._blocks = 0                                        # blocks encoded
        self._states = np.zeros((0, frontend.dim), np.float32)  # states from _states_start on
        self._states_start = 0
        self._outputs: dict[int, np.ndarray] = {}               # state index -> output [K], not yet consumed
        self._next_output = 0                                   # first state with no output yet
        self.received = 0
        self.frames_done = 0

    @property
    def latency_s(self) -> float:
        """Audio past a frame's time that must arrive before the frame is out (the look-ahead, the wait for a
        whole block, and the interpolation's next state)."""
        cfg = self.frontend.cfg
        return (cfg.block + cfg.lookahead + self._ahead + 1) / WHISPER_RATE

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """float32 [n,K]: the frames this chunk (float32 [S] 16 kHz mono) completed, maybe none."""
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        self._audio = np.concatenate([self._audio, chunk])
        self.received += len(chunk)
        cfg = self.frontend.cfg
        ready = (self.received // SAMPLES_PER_STATE - cfg.lookahead) // cfg.block   # blocks whose window is here
        self._encode(ready)
        self._run(self._states_start + len(self._states) - 1 - self._ahead)
        return self._frames(final=False)

    def flush(self) -> np.ndarray:
        """End of input: the remaining frames up to the last one the audio spans."""
        total = n_states(self.received)
        self._encode(math.ceil(total / self.frontend.cfg.block))
        self._states = self._states[:max(total - self._states_start, 0)]
        self._run(total - 1, total)
        return self._frames(final=True)

    def _encode(self, blocks: int) -> None:
        if blocks <= self._blocks:
            return
        cfg = self.frontend.cfg
        new = self.frontend.encode(block_windows(self._audio, self._blocks, blocks - self._blocks, cfg,
                                                 self._audio_start))
        self._states = np.concatenate([self._states, new])
        self._blocks = blocks
        keep = self._blocks * cfg.block - cfg.context                 # the next window's first sample's state
        drop = max(keep * SAMPLES_PER_STATE - self._audio_start, 0)
        self._audio, self._audio_start = self._audio[drop:], self._audio_start + drop

    def _run(self, last: int, total: int | None = None) -> None:
        """Outputs of states ``_next_output .. last``; ``total``: the stream's states when it has ended."""
        if last < self._next_output:
            return
        lo = max(self._next_output - self._back, 0)
        hi = min(last + self._ahead + 1, self._states_start + len(self._states))
        window = self._states[lo - self._states_start:hi - self._states_start]           # [n,D]
        with torch.inference_mode():
            out = self.net(torch.from_numpy(np.ascontiguousarray(window))[None])[0].numpy()  # [n,K]
        for j in range(self._next_output, last + 1):
            self._outputs[j] = out[j - lo]
        self._next_output = last + 1
        forget = self._next_output - self._back - self._states_start
        if forget > 0 and total is None:
            self._states, self._states_start = self._states[forget:], self._states_start + forget

    def _frames(self, final: bool) -> np.ndarray:
        rate = WHISPER_RATE / self.fps
        total = n_states(self.received)
        n_frames = math.floor((total - 1) / rate) + 1 if final and total else None
        rows = []
        while True:
            i = self.frames_done + len(rows)
            if n_frames is not None and i >= n_frames:
                break
            pos = i * rate
            left = math.floor(pos)
            right = left + 1 if not final else min(left + 1, total - 1)
            if right >= self._next_output:
                break
            w = np.float32(pos - left)
            rows.append((1 - w) * self._outputs[left] + w * self._outputs[right])
        self.frames_done += len(rows)
        for j in [j for j in self._outputs if j < math.floor(self.frames_done * rate)]:
            del self._outputs[j]
        return np.array(rows, np.float32).reshape(len(rows), len(self.net.config.outputs))

