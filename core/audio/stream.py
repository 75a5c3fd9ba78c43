"""Streaming audio features for live input: push chunks of any size, get each video frame's feature as soon
as its mel window is complete.

The latency floor is fixed: frame i (at time i/fps) is ready once audio up to i/fps + ``latency_s`` has
arrived (162.5 ms for our encoder's window, which looks 160 ms ahead; see core.audio.mel). The features
equal the offline ones on the same audio: mel frames are computed from the same samples by the same
function, and ``flush`` ends the stream with the zeros the offline pass pads with.
Window encoders only (the AVE, SyncTalk's): Whisper's encoder needs 30 s of context and is offline.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from core.audio.features import AveEncoder, FeatureEncoder
from core.audio.mel import (frame_mel_index, frames_for_audio, lookahead_seconds, mel_frames, preemphasize,
                            windows_at)
from core.errors import AvatarStudioError


class StreamingFeatures:
    """Incremental features of one audio stream, frame by frame from frame 0."""

    def __init__(self, encoder: FeatureEncoder, fps: Fraction | float):
        if not isinstance(encoder, AveEncoder):
            raise AvatarStudioError(f"live input needs a mel-window encoder (ave or synctalk), not {encoder.id}: "
                                    "Whisper sees 30 s at a time")
        self.encoder, self.cfg, self.fps = encoder, encoder.mel, Fraction(fps).limit_denominator(1_000_000)
        cfg = self.cfg
        self._next_mel = int(frame_mel_index(0, self.fps, cfg)) + cfg.window_start   # next mel frame to compute
        self._buf_start = self._next_mel * cfg.hop - cfg.n_fft // 2               # sample index of _buf[0]
        self._buf = np.zeros(max(0, -self._buf_start), np.float64)                 # pre-emphasised, zeros before 0
        self._mel = torch.zeros(cfg.n_mels, 0)                                     # computed mel frames ...
        self._mel_first = self._next_mel                                           # ... from this index
        self._last_sample = 0.0                                                    # for pre-emphasis across chunks
        self.received = 0                                                          # samples pushed
        self.frames_done = 0                                                       # features returned

    @property
    def latency_s(self) -> float:
        """Audio past a frame's time that must arrive before the frame is out (as StreamingSpeech's)."""
        return lookahead_seconds(self.fps, self.cfg)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """float32 [n,D]: the features of the frames this chunk (float32 [S] 16 kHz mono) completed, maybe none."""
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        if len(chunk):
            self._buf = np.concatenate([self._buf, preemphasize(chunk, self.cfg.preemphasis, self._last_sample)])
            self._last_sample = float(chunk[-1])
            self.received += len(chunk)
        return self._advance()

    def flush(self, n_frames: int | None = None) -> np.ndarray:
        """End of input: the remaining frames up to ``n_frames`` (default: every frame the audio spans), their
        windows completed with silence as the offline pass does."""
        n_frames = frames_for_audio(self.received, self.fps) if n_frames is None else n_frames
        if n_frames <= self.frames_done:
            return np.zeros((0, self.encoder.dim), np.float32)
        cfg = self.cfg
        last_mel = int(frame_mel_index(n_frames - 1, self.fps, cfg)) + cfg.window_start + cfg.window_frames - 1
        need = last_mel * cfg.hop + cfg.n_fft // 2 - (self._buf_start + len(self._buf))
        if need > 0:
            self._buf = np.concatenate([self._buf, np.zeros(need)])
        return self._advance(limit=n_frames)

    def _advance(self, limit: int | None = None) -> np.ndarray:
        cfg = self.cfg
        available = self._buf_start + len(self._buf)            # samples (pre-emphasised) known so far
        ready = (available - cfg.n_fft // 2) // cfg.hop         # mel frames with centre k*hop: k <= ready
        if ready >= self._next_mel:
            m = ready - self._next_mel + 1
            lo = self._next_mel * cfg.hop - cfg.n_fft // 2 - self._buf_start
            new = mel_frames(self._buf[lo: lo + (m - 1) * cfg.hop + cfg.n_fft], cfg)   # [n_mels, m]
            self._mel = torch.cat([self._mel, new], dim=1)
            self._next_mel += m
        # Frames whose windows end at or before the last computed mel frame.
        frames = []
        while limit is None or self.frames_done + len(frames) < limit:
            i = self.frames_done + len(frames)
            if int(frame_mel_index(i, self.fps, cfg)) + cfg.window_start + cfg.window_frames > self._next_mel:
                break
            frames.append(i)
        if not frames:
            return np.zeros((0, self.encoder.dim), np.float32)
        starts = frame_mel_index(np.array(frames), self.fps, cfg) + cfg.window_start - self._mel_first
        out = self.encoder.encode(windows_at(self._mel, starts, cfg))                 # [n,D]
        self.frames_done += len(frames)
        self._forget()
        return out

    def _forget(self) -> None:
        """Drop mel frames and samples no later frame needs: memory stays flat over hours of input."""
        cfg = self.cfg
        keep_mel = int(frame_mel_index(self.frames_done, self.fps, cfg)) + cfg.window_start
        if keep_mel > self._mel_first:
            self._mel = self._mel[:, keep_mel - self._mel_first:]
            self._mel_first = keep_mel
        keep_sample = self._next_mel * cfg.hop - cfg.n_fft // 2
        if keep_sample > self._buf_start:
            self._buf = self._buf[keep_sample - self._buf_start:]
            self._buf_start = keep_sample
