"""The expression codebook (SyncTalk++ Eq. 25-27 in spirit): a small Transformer VQ-VAE over sequences of the seven
core blendshapes, learnt first on the corpus (people in general: the prior) and then on the subject's own tracked
footage, so that any upper-face sequence (generated, imported from another person, edited past the footage's
range) is rebuilt from the motions this avatar has seen before it is rendered.

Sequences are read as z-scores over the subject's own tracked values: another face's raw values map onto this
subject's range. The encoder downsamples ``stride`` frames into a token, a Transformer encoder layer gives each
token its context, each token is replaced by its nearest codebook vector (straight-through gradients, codebook and
commitment losses), and the decoder mirrors the encoder: a Transformer layer, then the tokens read at every frame
(linear between token centres, so no token's frames jump at its edges) and a short convolution to the blendshapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import from_dict, to_dict
from core.errors import AvatarStudioError
from core.fsutil import atomic_path
from core.jobs import CancelToken, Progress, ProgressFn
from core.project import file_sha256
from core.tracking.landmarks import EXPRESSION_BLENDSHAPES, EXPRESSION_COLUMNS

K = len(EXPRESSION_BLENDSHAPES)


@dataclass(frozen=True)
class CodebookConfig:
    window: int = 32            # frames per training window (1.3 s at 25 fps)
    stride: int = 2             # frames per token
    dim: int = 32               # token width
    codes: int = 64             # codebook vectors
    heads: int = 4
    prior_steps: int = 2000     # on the corpus
    subject_steps: int = 400    # on the subject's footage, from the prior
    batch: int = 64
    lr: float = 2e-3
    beta: float = 0.25          # commitment loss weight
    seed: int = 0


class ExpressionVQ(nn.Module):
    def __init__(self, config: CodebookConfig = CodebookConfig()):
        """Initialised from ``config.seed``: the same config makes the same codebook."""
        super().__init__()
        self.config = c = config
        with torch.random.fork_rng():
            torch.manual_seed(c.seed)
            self.down = nn.Conv1d(K, c.dim, kernel_size=c.stride, stride=c.stride)
            self.encoder = nn.TransformerEncoderLayer(c.dim, c.heads, 2 * c.dim, dropout=0.0, batch_first=True)
            self.codebook = nn.Embedding(c.codes, c.dim)
            self.decoder = nn.TransformerEncoderLayer(c.dim, c.heads, 2 * c.dim, dropout=0.0, batch_first=True)
            self.up = nn.Sequential(nn.Conv1d(c.dim, c.dim, 5, padding=2), nn.GELU(), nn.Conv1d(c.dim, K, 1))
        self.register_buffer("mean", torch.zeros(K))   # the subject's tracked values: z-scores are over these
        self.register_buffer("std", torch.ones(K))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(rebuilt z-scores [B,T,K], VQ loss) of z-scores [B,T,K] (T a multiple of the stride)."""
        h = self.encoder(self.down(z.transpose(1, 2)).transpose(1, 2))                # [B,T/s,D]
        flat = h.reshape(-1, h.shape[-1])
        nearest = torch.cdist(flat, self.codebook.weight).argmin(dim=1)               # [B*T/s]
        q = self.codebook(nearest).reshape(h.shape)
        loss = ((q - h.detach()) ** 2).mean() + self.config.beta * ((q.detach() - h) ** 2).mean()
        q = h + (q - h).detach()                                                       # straight through
        frames = F.interpolate(self.decoder(q).transpose(1, 2), scale_factor=self.config.stride, mode="linear",
                               align_corners=False)                                    # [B,D,T]
        return self.up(frames).transpose(1, 2), loss


def windows(tracks: list[np.ndarray], size: int, rng: np.random.Generator, count: int) -> Tensor:
    """float32 [count, size, K]: random windows from z-scored tracks [T,K] (those shorter than ``size`` skipped)."""
    usable = [t for t in tracks if len(t) >= size]
    if not usable:
        raise AvatarStudioError(f"the codebook needs tracks of at least {size} frames")
    weights = np.array([len(t) - size + 1 for t in usable], float)
    picks = rng.choice(len(usable), size=count, p=weights / weights.sum())
    starts = [int(rng.integers(0, len(usable[i]) - size + 1)) for i in picks]
    return torch.from_numpy(np.stack([usable[i][a:a + size] for i, a in zip(picks, starts)]).astype(np.float32))


def zscores(track: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z [T,K], mean [K], std [K]) of a raw track [T,K]."""
    mean, std = track.mean(0), track.std(0) + 1e-3
    return (track - mean) / std, mean, std


def fit(model: ExpressionVQ, tracks: list[np.ndarray], steps: int, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None, what: str = "codebook") -> float:
    """Train ``model`` on z-scored tracks [T,K] for ``steps``; returns the last steps' mean reconstruction MSE."""
    c = model.config
    rng = np.random.default_rng(c.seed)
    torch.manual_seed(c.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=c.lr)
    model.train()
    recent = []
    for step in range(steps):
        if cancel is not None:
            cancel.check(what)
        batch = windows(tracks, c.window, rng, c.batch)
        rebuilt, vq = model(batch)
        mse = ((rebuilt - batch) ** 2).mean()
        optimiser.zero_grad()
        (mse + vq).backward()
        optimiser.step()
        recent = (recent + [float(mse.detach())])[-50:]
        if progress is not None and step % 50 == 0:
            progress(Progress(step / steps, f"Codebook ({what}): step {step}/{steps}, error {np.mean(recent):.3f}"))
    model.eval()
    return float(np.mean(recent)) if recent else float("nan")


def learn_subject(prior: ExpressionVQ, track: np.ndarray, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> ExpressionVQ:
    """A copy of the prior fitted to the subject's tracked core blendshapes [T,K] (their own range)."""
    model = ExpressionVQ(prior.config)
    model.load_state_dict(prior.state_dict())
    z, mean, std = zscores(track.astype(np.float64))
    model.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    model.std.copy_(torch.from_numpy(std.astype(np.float32)))
    fit(model, [z], prior.config.subject_steps, progress, cancel, "the subject")
    return model


def in_range(model: ExpressionVQ, track: np.ndarray) -> np.ndarray:
    """float32 [T,K]: a core-blendshape track [T,K] rebuilt from the subject's codebook, clipped to [0, 1]. Read
    as training saw it: windows of ``config.window`` frames every half window, overlapped and added under a Hann
    weight, so a stretch of the track only shapes its own neighbourhood."""
    w = model.config.window
    hop = w // 2
    n = len(track)
    length = w if n <= w else w + -(-(n - w) // hop) * hop
    mean, std = model.mean.numpy(), model.std.numpy()
    z = np.pad((track - mean) / std, ((0, length - n), (0, 0)), mode="edge").astype(np.float32)   # [L,K]
    starts = range(0, length - w + 1, hop)
    with torch.inference_mode():
        rebuilt = model(torch.from_numpy(np.stack([z[a:a + w] for a in starts])))[0].numpy()        # [B,w,K]
    weight = np.hanning(w + 2)[1:-1]                                                                  # [w] > 0
    total, out = np.zeros(length), np.zeros((length, z.shape[1]))
    for a, r in zip(starts, rebuilt):
        out[a:a + w] += r * weight[:, None]
        total[a:a + w] += weight
    return np.clip((out / total[:, None])[:n] * std + mean, 0.0, 1.0).astype(np.float32)


def save_codebook(path: Path, model: ExpressionVQ) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": "avatar-studio expression codebook 1", "config": to_dict(model.config),
                    "state": model.state_dict()}, tmp)


SHIPPED_FILE = "expression_codebook.pt"  # the corpus prior, in resources/models/ with its .sha256


def load_codebook(path: Path, sha256: str | None = None) -> ExpressionVQ:
    """The codebook at ``path`` (tensors only: ``weights_only``), refused unless it has ``sha256`` when given;
    AvatarStudioError when unreadable."""
    if sha256 is not None and (not Path(path).is_file() or file_sha256(path) != sha256):
        raise AvatarStudioError(f"{path}: the expression codebook is missing or does not match its recorded sha256: "
                                "reinstall the studio or run 'avatar-studio-cli expression-model train'")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = ExpressionVQ(from_dict(CodebookConfig, saved["config"]))
        model.load_state_dict(saved["state"])
        return model.eval()
    except Exception as e:  # any unreadable content, whatever torch raises
        raise AvatarStudioError(f"{path}: not a readable expression codebook ({type(e).__name__}: {e})") from e


def shipped_prior() -> ExpressionVQ:
    """The corpus prior shipped in resources/models, checked against its recorded sha256."""
    root = Path(str(resources.files("resources") / "models"))
    digest = root / (SHIPPED_FILE + ".sha256")
    if not digest.is_file():
        raise AvatarStudioError(f"{digest}: the shipped expression codebook's hash is missing: reinstall the studio")
    return load_codebook(root / SHIPPED_FILE, digest.read_text().split()[0])


def prior_tracks(tracks: list[tuple[np.ndarray, np.ndarray, float]]) -> list[np.ndarray]:
    """Corpus tracks as the prior learns them: each clip's core blendshapes [T,52]'s face frames (valid [T]) at
    25 fps, z-scored over themselves (every face its own range)."""
    out = []
    for blendshapes, valid, fps in tracks:
        track = blendshapes[:, EXPRESSION_COLUMNS][valid].astype(np.float64)
        t = np.arange(len(track)) / fps
        at = np.arange(int(len(track) / fps * 25)) / 25
        if len(at) >= 2:
            out.append(zscores(np.stack([np.interp(at, t, track[:, k]) for k in range(K)], axis=1))[0])
    return out
