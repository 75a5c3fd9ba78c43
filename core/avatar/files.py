"""The trained avatar's files in a project: the avatar (config and model; what evaluation, dubbing and the
viewport load) and training's resumable checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.avatar.config import TrainConfig
from core.avatar.model import AvatarModel
from core.config import from_dict, to_dict
from core.errors import ProjectError
from core.fsutil import Unreadable, atomic_path, load_torch
from core.project import damaged


def save_avatar(path: Path, model: AvatarModel, config: TrainConfig) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": json.dumps(to_dict(config)), "n": len(model), "audio_dim": len(model.audio_mean),
                    "model": model.state_dict()}, tmp)


def load_avatar(path: Path) -> tuple[AvatarModel, TrainConfig]:
    """The trained avatar saved by training; ProjectError when missing or unreadable."""
    if not path.is_file():
        raise ProjectError(path, "no trained avatar: train it first (avatar-studio-cli train)")
    try:
        saved = load_torch(path)
        config = from_dict(TrainConfig, json.loads(saved["config"]))
        model = AvatarModel.empty(int(saved["n"]), int(saved["audio_dim"]), config.avatar)
        model.load_state_dict(saved["model"])
    except (Unreadable, KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
        raise damaged(path, "the avatar", str(e), "train it again (avatar-studio-cli train)") from e
    return model.eval(), config
