"""Log-mel spectrogram and its per-video-frame windows, offline and incrementally with the same numbers.

Mel frame ``k`` is the STFT frame centred on sample ``k * hop`` (the signal is zero outside [0, S)), so a
frame's value depends only on samples it covers: the streaming extractor computes the same frames as the
offline pass once their samples have arrived. Values are Wav2Lip's normalised dB in [-4, 4], the scale
SyncNet-style encoders (and SyncTalk's audio-visual encoder) were trained on; silence is -4.

Video frame ``i`` (at time i/fps) takes ``window_frames`` mel frames starting ``window_start`` frames from
mel frame ``floor(i * rate / fps)``: centred on the frame for our encoder, starting at it for SyncTalk's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from core.media.audio import AUDIO_RATE


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = AUDIO_RATE
    n_fft: int = 400          # 25 ms Hann window
    hop: int = 160            # 10 ms: 100 mel frames per second
    n_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    window_frames: int = 16   # mel frames per video frame
    window_start: int = -8    # first mel frame of a video frame's window, relative to the frame's own

    @property
    def rate(self) -> Fraction:
        """Mel frames per second."""
        return Fraction(self.sample_rate, self.hop)


# SyncTalk's audio-visual encoder was trained on Wav2Lip's mel: 800-sample STFT, 12.5 ms hop (80 Hz), and a
# window that starts at the video frame.
SYNCTALK_MEL = MelConfig(n_fft=800, hop=200, window_start=0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """float64 [n_mels, n_fft//2+1]: Slaney-style triangular filters, area-normalised (librosa's default)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:  # Slaney: linear below 1 kHz, logarithmic above
        f = np.asarray(f, np.float64)
        return np.where(f < 1000.0, f * 3.0 / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0))

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0)))

    fft_hz = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)                          # [F]
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))  # [n_mels+2]
    widths = np.diff(edges)                                                                   # [n_mels+1]
    ramps = edges[:, None] - fft_hz[None, :]                                                  # [n_mels+2, F]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))                                       # [n_mels, F]
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights)


@lru_cache(maxsize=8)
def _hann(n: int) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float64)


def preemphasize(audio: np.ndarray, coef: float, previous: float = 0.0) -> np.ndarray:
    """float64 [S]: y[n] = x[n] - coef * x[n-1], with x[-1] = ``previous`` (0 at the start of a signal)."""
    x = np.asarray(audio, np.float64)
    shifted = np.concatenate([[previous], x[:-1]]) if len(x) else x
    return x - coef * shifted


def mel_frames(emphasized: np.ndarray, cfg: MelConfig) -> torch.Tensor:
    """float32 [n_mels, M] from pre-emphasised samples float64 [(M-1)*hop + n_fft] that hold exactly M
    consecutive STFT frames (the first frame starts at sample 0 of the array)."""
    x = torch.from_numpy(np.ascontiguousarray(emphasized, np.float64))
    frames = x.unfold(0, cfg.n_fft, cfg.hop)                          # [M, n_fft]
    spectrum = torch.fft.rfft(frames * _hann(cfg.n_fft)).abs()        # [M, F]
    mel = spectrum @ mel_filterbank(cfg).T                            # [M, n_mels]
    db = 20.0 * torch.log10(mel.clamp_min(1e-5)) - 20.0
    return (8.0 * (db + 100.0) / 100.0 - 4.0).clamp(-4.0, 4.0).T.float()


def log_mel(audio: np.ndarray, cfg: MelConfig = MelConfig(), first: int = 0, count: int | None = None) -> torch.Tensor:
    """float32 [n_mels, count]: mel frames first .. first+count-1 of audio float32 [S] at cfg.sample_rate
    (default: every frame whose centre lies in the signal, 1 + S // hop). Frames may lie before or after
    the signal; their missing samples are zeros."""
    audio = np.asarray(audio, np.float32)
    if count is None:
        count = 1 + len(audio) // cfg.hop - first
    if count <= 0:
        return torch.zeros(cfg.n_mels, 0)
    emphasized = preemphasize(audio, cfg.preemphasis)
    start = first * cfg.hop - cfg.n_fft // 2                  # sample under the first frame's first tap
    stop = start + (count - 1) * cfg.hop + cfg.n_fft
    padded = np.zeros(stop - start, np.float64)
    lo, hi = max(start, 0), min(stop, len(audio))
    if hi > lo:
        padded[lo - start:hi - start] = emphasized[lo:hi]
    return mel_frames(padded, cfg)


def frame_mel_index(frame: np.ndarray | int, fps: Fraction | float, cfg: MelConfig) -> np.ndarray:
    """int64: the mel frame at (or just before) each video frame's time, floor(i * rate / fps)."""
    ratio = Fraction(cfg.rate) / Fraction(fps).limit_denominator(1_000_000)
    i = np.asarray(frame, np.int64)
    return (i * ratio.numerator) // ratio.denominator


def window_span(n_frames: int, fps: Fraction | float, cfg: MelConfig) -> tuple[int, int]:
    """First mel frame and number of mel frames that the windows of video frames 0..n_frames-1 cover."""
    first = int(cfg.window_start)
    last = int(frame_mel_index(max(n_frames - 1, 0), fps, cfg)) + cfg.window_start + cfg.window_frames
    return first, last - first


def mel_windows(audio: np.ndarray, n_frames: int, fps: Fraction | float, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """float32 [n_frames, 1, n_mels, window_frames]: each video frame's mel window, the encoders' input."""
    first, count = window_span(n_frames, fps, cfg)
    mel = log_mel(audio, cfg, first, count)                                       # [n_mels, count]
    return windows_at(mel, frame_mel_index(np.arange(n_frames), fps, cfg) + cfg.window_start - first, cfg)


def windows_at(mel: torch.Tensor, starts: np.ndarray, cfg: MelConfig) -> torch.Tensor:
    """float32 [N, 1, n_mels, window_frames]: windows of mel [n_mels, M] starting at mel columns ``starts``."""
    idx = torch.as_tensor(np.asarray(starts, np.int64))[:, None] + torch.arange(cfg.window_frames)  # [N, W]
    return mel[:, idx].permute(1, 0, 2).unsqueeze(1).contiguous()


def pooled_mel(audio: np.ndarray, n_frames: int, fps: Fraction | float, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """float32 [n_frames, n_mels]: the log-mel averaged over each video frame's own span (the mel frames from
    the frame's time up to the next one's: 4 at 25 fps)."""
    per_frame = max(1, round(Fraction(cfg.rate) / Fraction(fps).limit_denominator(1_000_000)))
    windows = mel_windows(audio, n_frames, fps, replace(cfg, window_frames=per_frame, window_start=0))
    return windows[:, 0].mean(dim=2).numpy()                                      # [T, n_mels]


def speech_normalised(mel: np.ndarray, quantile: float = 25.0) -> np.ndarray:
    """float32 [T, n_mels]: each band of a clip's pooled log-mel [T, n_mels] standardised by its mean and std
    over the clip's speech frames (louder than its ``quantile`` percentile), applied to every frame.

    This is cepstral mean/variance normalisation with the pauses left out of the statistics: it removes what
    the speaker, microphone and room add to every frame, so a readout fitted on one voice reads another (on
    may_13s -> katie_8s it lifts a linear mouth readout's r from 0.35 on AVE + Whisper features to 0.58), and
    clips with more or less silence are scaled alike.
    """
    loudness = mel.mean(axis=1)                                                   # [T]
    speech = loudness > np.percentile(loudness, quantile) if len(mel) else loudness.astype(bool)
    ref = mel[speech] if np.count_nonzero(speech) >= 2 else mel                   # silence only: every frame
    return ((mel - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-3)).astype(np.float32)


def lookahead_seconds(fps: Fraction | float, cfg: MelConfig = MelConfig()) -> float:
    """How far past a video frame's time its window reaches: the streaming extractor's fixed latency floor."""
    last_centre = cfg.window_start + cfg.window_frames - 1      # mel frames after the frame's own (floor)
    return (last_centre * cfg.hop + cfg.n_fft // 2) / cfg.sample_rate


def frames_for_audio(n_samples: int, fps: Fraction | float, sample_rate: int = AUDIO_RATE) -> int:
    """Video frames that audio of ``n_samples`` spans (at least one for any non-empty audio)."""
    return max(1, math.ceil(Fraction(n_samples, sample_rate) * Fraction(fps).limit_denominator(1_000_000))) if n_samples else 0
