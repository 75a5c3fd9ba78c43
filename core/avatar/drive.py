"""Driving a trained avatar: a source frame's head pose and crop, an audio window and an expression -> the face
rendered and composited into that frame (SyncTalk++'s Portrait-Sync Generator). Evaluation, dubbing and the
studio's playback all render through here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.avatar.model import AvatarModel
from core.avatar.train import AVATAR_FILE, TrainConfig, expression, load_avatar
from core.avatar.views import FaceCrops, face_crops
from core.compose.portrait import PortraitConfig, composite
from core.project import Project
from core.render.api import rasterize
from core.tracking.track import load_tracking


@dataclass
class Driver:
    model: AvatarModel
    config: TrainConfig
    crops: FaceCrops
    landmarks: np.ndarray       # [T,478,2] the source footage's, px
    rot: np.ndarray             # [T,3,3] stabilised head pose
    trans: np.ndarray           # [T,3]
    intrinsics: tuple[float, float, float]   # focal, cx, cy
    expr: np.ndarray            # float32 [T,E] the source footage's tracked expression
    portrait: PortraitConfig = PortraitConfig()

    @classmethod
    def load(cls, project: Project) -> "Driver":
        model, config = load_avatar(project.path(AVATAR_FILE))
        tracking = load_tracking(project)
        landmarks = tracking["landmarks"]
        return cls(model, config, face_crops(landmarks, config.crop_size, config.crop_margin), landmarks,
                   tracking["rot"], tracking["trans"],
                   (float(tracking["focal"]), float(tracking["cx"]), float(tracking["cy"])), expression(tracking))

    def render(self, source: int, audio: np.ndarray, expr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rgb float32 [S,S,3], alpha float32 [S,S]) of the face crop of source frame ``source``, driven by the
        audio window [F,D] (``model.audio_window``) and the expression [E]."""
        camera = self.crops.camera(source, self.rot[source], self.trans[source], *self.intrinsics)
        with torch.inference_mode():
            gaussians = self.model(torch.from_numpy(np.ascontiguousarray(audio, np.float32)),
                                   torch.from_numpy(np.ascontiguousarray(expr, np.float32)))
            out = rasterize(**gaussians, camera=camera, background=torch.zeros(3), backend=self.config.backend)
        return out.rgb.clamp(0, 1).numpy(), out.alpha[..., 0].numpy()

    def frame(self, source_frame: np.ndarray, source: int, audio: np.ndarray, expr: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3]: ``source_frame`` (frame ``source`` of the footage) with the driven face blended in."""
        rgb, _ = self.render(source, audio, expr)
        h, w = source_frame.shape[:2]
        full = self.crops.paste(rgb, source, (w, h))                                      # [H,W,3]
        return composite(source_frame, full, self.landmarks[source], self.portrait)
