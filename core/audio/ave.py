"""The audio-visual encoder (AVE): SyncTalk++'s Face-Sync Controller audio side (Eq. 1-3).

``AudioEncoder`` maps an 80x16 log-mel window to a 512-d feature. Its layers are SyncTalk's, key for key,
so their released ``audio_visual_encoder.pth`` loads into it (:func:`import_synctalk_checkpoint`).
Training (core.audio.train_ave) pairs it with a ``VisualEncoder`` over 5 lower-face crops (the sync
discriminator, Eq. 1-2) and a ``MouthHead`` predicting the mouth from audio (Eq. 3); only the audio encoder
makes features for the avatar, the other two stay in the checkpoint for evaluation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import AvatarStudioError

AVE_DIM = 512
SYNC_FRAMES = 5   # video frames the sync discriminator sees around the centre frame


class ConvBlock(nn.Module):
    """Conv + BatchNorm (+ the input, when residual) + ReLU: SyncTalk's ``Conv2d`` block."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


class AudioEncoder(nn.Module):
    """[B,1,80,16] log-mel windows -> [B,512] features (non-negative: the last block ends in a ReLU).

    ``width`` scales the channels (32 is SyncTalk's); the output stays 512-d so encoders are interchangeable.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, w, 3, 1, 1),                                   # [B,w,80,16]
            ConvBlock(w, w, 3, 1, 1, residual=True),
            ConvBlock(w, w, 3, 1, 1, residual=True),
            ConvBlock(w, 2 * w, 3, (3, 1), 1),                          # [B,2w,27,16]
            ConvBlock(2 * w, 2 * w, 3, 1, 1, residual=True),
            ConvBlock(2 * w, 2 * w, 3, 1, 1, residual=True),
            ConvBlock(2 * w, 4 * w, 3, 3, 1),                           # [B,4w,9,6]
            ConvBlock(4 * w, 4 * w, 3, 1, 1, residual=True),
            ConvBlock(4 * w, 4 * w, 3, 1, 1, residual=True),
            ConvBlock(4 * w, 8 * w, 3, (3, 2), 1),                      # [B,8w,3,3]
            ConvBlock(8 * w, 8 * w, 3, 1, 1, residual=True),
            ConvBlock(8 * w, AVE_DIM, 3, 1, 0),                         # [B,512,1,1]
            ConvBlock(AVE_DIM, AVE_DIM, 1, 1, 0),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder(mel).flatten(1)                       # [B,512]


class VisualEncoder(nn.Module):
    """[B,5*3,48,96] stacked lower-face crops (values in [0,1]) -> [B,512] non-negative features."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            ConvBlock(3 * SYNC_FRAMES, w, 5, (1, 2), 2),                # [B,w,48,48]
            ConvBlock(w, 2 * w, 3, 2, 1),                               # [B,2w,24,24]
            ConvBlock(2 * w, 2 * w, 3, 1, 1, residual=True),
            ConvBlock(2 * w, 4 * w, 3, 2, 1),                           # [B,4w,12,12]
            ConvBlock(4 * w, 4 * w, 3, 1, 1, residual=True),
            ConvBlock(4 * w, 8 * w, 3, 2, 1),                           # [B,8w,6,6]
            ConvBlock(8 * w, 8 * w, 3, 2, 1),                           # [B,8w,3,3]
            ConvBlock(8 * w, AVE_DIM, 3, 1, 0),                         # [B,512,1,1]
            ConvBlock(AVE_DIM, AVE_DIM, 1, 1, 0),
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops).flatten(1)


class MouthHead(nn.Module):
    """Audio features of 5 consecutive frames [B,5,512] -> the centre frame's mouth targets [B,81] (Eq. 3)."""

    def __init__(self, n_out: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(0.3),
            nn.Conv1d(AVE_DIM, hidden, 3, padding=1), nn.LeakyReLU(0.02),
            nn.Conv1d(hidden, hidden, 3), nn.LeakyReLU(0.02),           # [B,h,3]
            nn.Flatten(), nn.Linear(3 * hidden, n_out),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats.transpose(1, 2))


def fused_for_inference(encoder: AudioEncoder) -> AudioEncoder:
    """A copy of a trained encoder in eval mode with each BatchNorm folded into its conv: the same outputs
    (to ~1e-6) in half the operations, which matters for one window every 40 ms of live input."""
    fused = copy.deepcopy(encoder).eval()
    for block in fused.audio_encoder:
        conv, norm = block.conv_block
        block.conv_block = nn.Sequential(torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm))
    return fused.requires_grad_(False)


def sync_probability(audio_feat: torch.Tensor, visual_feat: torch.Tensor) -> torch.Tensor:
    """P_sync [B] in [0,1]: cosine similarity of non-negative features [B,512] (Eq. 1)."""
    return F.cosine_similarity(audio_feat, visual_feat, dim=1, eps=1e-6).clamp(1e-6, 1 - 1e-6)


def import_synctalk_checkpoint(path: str | Path) -> AudioEncoder:
    """SyncTalk's ``audio_visual_encoder.pth`` (keys of its Sequential, 80x16 mel -> 512-d) as an AudioEncoder.

    Loaded with weights_only=True: a checkpoint cannot run code. Use it with ``core.audio.mel.SYNCTALK_MEL``.
    """
    path = Path(path)
    if not path.is_file():
        raise AvatarStudioError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for files that are not checkpoints
        raise AvatarStudioError(f"{path}: not a PyTorch checkpoint that loads safely ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AvatarStudioError(f"{path}: holds no tensor state dict")
    state = {k.removeprefix("module.").removeprefix("audio_encoder."): v for k, v in state.items()}
    encoder = AudioEncoder()
    expected = {k.removeprefix("audio_encoder."): v.shape for k, v in encoder.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(s)})" for k, s in expected.items()
             if k in state and state[k].shape != s]
    if missing or unexpected or wrong:
        detail = "; ".join(filter(None, [
            f"missing {len(missing)} tensors (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"wrong shapes: {', '.join(wrong[:3])}" if wrong else "",
        ]))
        raise AvatarStudioError(f"{path}: not a SyncTalk audio encoder (80x16 mel -> 512-d): {detail}")
    encoder.audio_encoder.load_state_dict(state)
    return encoder.eval()
