"""Whisper tiny.en's audio encoder in torch, with its weights read from the CTranslate2 file that faster-whisper
runs, so that the speech model can read the states between the encoder's blocks.

CTranslate2 returns only the encoder's output. Intermediate states of a speech encoder keep more of how a sound is
articulated and less of what the decoder needs next; the speech model reads the residual stream after blocks 2 and
3 of 4 (measured by speaker-disjoint cross-validation: the note of the change that added this module). On the
encoder's output this implementation equals CTranslate2's to float32 rounding (test).

Layer numbers: ``k`` in 0..3 is the residual stream after ``k`` blocks (0: the convolutional stem plus positions),
``OUTPUT`` (4) the encoder's output (after all blocks and the final layer norm).
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.errors import AvatarStudioError
from core.jobs import CancelToken
from core.models import WHISPER_TINY_EN, resolve_model

OUTPUT = 4
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}   # CTranslate2's DataType ids
_PREFIX = "encoder/"


def read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model file (binary format 5 or 6) whose names start with ``encoder/``, that
    prefix removed. AvatarStudioError when the file is not such a model."""
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        n = take("<H")
        value = data[offset:offset + n - 1].decode("utf-8")
        offset += n
        return value

    try:
        version = take("<I")
        if version not in (5, 6):
            raise ValueError(f"binary version {version}")
        spec, _revision = text(), take("<I")
        if spec != "WhisperSpec":
            raise ValueError(f"a {spec}, not a Whisper model")
        out = {}
        for _ in range(take("<I")):
            name = text()
            shape = [take("<I") for _ in range(take("<B"))]
            dtype, nbytes = np.dtype(_DTYPES[take("<B")]), take("<I")
            if name.startswith(_PREFIX):
                out[name[len(_PREFIX):]] = np.frombuffer(data, dtype, nbytes // dtype.itemsize, offset).reshape(shape)
            offset += nbytes
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as e:
        raise AvatarStudioError(f"{path}: not a CTranslate2 Whisper model file ({e})") from e
    return out


class WhisperEncoder:
    """The encoder: log-mel [B,80,2T] -> the chosen layers' states, concatenated [B,T,384*len(layers)]."""

    def __init__(self, path: Path):
        weights = read_ctranslate2(path)
        self.heads = int(weights.pop("num_heads"))
        self.w = {k: torch.from_numpy(v.astype(np.float32)) for k, v in weights.items()}
        self.blocks = sum(1 for k in self.w if k.endswith("self_attention/linear_0/weight"))
        self.dim = self.w["layer_norm/gamma"].shape[0]

    def __call__(self, mel: Tensor, layers: tuple[int, ...]) -> Tensor:
        w, d = self.w, self.dim
        with torch.inference_mode():
            x = F.gelu(F.conv1d(mel, w["conv1/weight"], w["conv1/bias"], padding=1))              # [B,D,2T]
            x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], padding=1, stride=2))      # [B,D,T]
            x = x.transpose(1, 2) + w["position_encodings/encodings"][:x.shape[2]]                # [B,T,D]
            found = {0: x}
            for i in range(min(max(layers), self.blocks)):
                x = x + self._attention(x, f"layer_{i}/self_attention/")
                x = x + self._ffn(x, f"layer_{i}/ffn/")
                found[i + 1] = x
            if OUTPUT in layers:
                found[OUTPUT] = F.layer_norm(x, (d,), w["layer_norm/gamma"], w["layer_norm/beta"])
            return torch.cat([found[k] for k in layers], dim=2)

    def _attention(self, x: Tensor, p: str) -> Tensor:
        w, (b, t, d), h = self.w, x.shape, self.heads
        y = F.layer_norm(x, (d,), w[p + "layer_norm/gamma"], w[p + "layer_norm/beta"])
        q, k, v = F.linear(y, w[p + "linear_0/weight"], w[p + "linear_0/bias"]).view(b, t, 3, h, d // h) \
            .permute(2, 0, 3, 1, 4)                                                               # 3x [B,H,T,D/H]
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        return F.linear(y, w[p + "linear_1/weight"], w[p + "linear_1/bias"])

    def _ffn(self, x: Tensor, p: str) -> Tensor:
        w, d = self.w, x.shape[2]
        y = F.layer_norm(x, (d,), w[p + "layer_norm/gamma"], w[p + "layer_norm/beta"])
        y = F.gelu(F.linear(y, w[p + "linear_0/weight"], w[p + "linear_0/bias"]))
        return F.linear(y, w[p + "linear_1/weight"], w[p + "linear_1/bias"])


_encoders: dict[str | None, WhisperEncoder] = {}
_lock = threading.Lock()


def whisper_encoder(model_path: str | Path | None, cancel: CancelToken) -> WhisperEncoder:
    """The encoder of the Whisper tiny.en model for a settings path (None: found as core.models finds it), resolved,
    checked and loaded once per path."""
    key = None if model_path is None else str(model_path)
    with _lock:
        if key not in _encoders:
            _encoders[key] = WhisperEncoder(resolve_model(WHISPER_TINY_EN, model_path, cancel=cancel))
        return _encoders[key]
