"""Driving a trained avatar: a source frame's head pose and crop, a lip feature (from an audio window, or from the
footage's own tracked mouths) and an expression -> the face rendered and composited into that frame (SyncTalk++'s
Portrait-Sync Generator). Evaluation, dubbing and the studio's playback all render through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from core.audio.mouth import standardised_mouths
from core.avatar.bake import BakeConfig, BakedDeformation, bake
from core.avatar.config import TrainConfig
from core.avatar.files import load_avatar
from core.avatar.model import AvatarModel, Canonical
from core.avatar.views import FootageViews
from core.compose.portrait import PortraitConfig, composite
from core.jobs import CancelToken
from core.layout import AVATAR_FILE
from core.pipeline import require_current
from core.project import Project
from core.render.api import rasterize
from core.split import trained_on
from core.tracking.pose import project
from core.tracking.track import load_tracking

Pose = tuple[np.ndarray, np.ndarray]  # rot [3,3], trans [3]: a frame's head pose


@dataclass
class Driver:
    model: AvatarModel
    config: TrainConfig
    views: FootageViews         # the source footage: crops, cameras, landmarks, tracked expression
    template: np.ndarray        # float32 [468,3] the subject's fitted head, head space: moves the blend with a pose
    portrait: PortraitConfig = PortraitConfig()
    baked: BakedDeformation | None = None   # when set, frames are driven through it (``bake``), not the network

    @classmethod
    def load(cls, project: Project, tracking: dict[str, np.ndarray] | None = None) -> "Driver":
        """The project's trained avatar (``tracking``: the project's, when already loaded); ProjectError saying why
        when it is missing or stale (the footage, the tracking or the audio features changed since it was
        trained)."""
        require_current(project, "avatar")
        model, config = load_avatar(project.path(AVATAR_FILE))
        tracking = load_tracking(project) if tracking is None else tracking
        return cls(model, config, FootageViews.from_tracking(tracking, config.crop_size, config.crop_margin),
                   tracking["template"])

    @cached_property
    def canonical(self) -> Canonical:
        """The model's frame-independent part, computed on first use: a third of a frame's model time."""
        with torch.inference_mode():
            return self.model.canonical()

    @cached_property
    def mouths(self) -> np.ndarray:
        """float32 [T,81]: the footage's tracked mouths as the lip feature reads them in training (z-scores)."""
        return standardised_mouths(self.views.landmarks, trained_on(self.views.valid, self.config.holdout))

    def estimated_mouths(self, audio: np.ndarray) -> torch.Tensor:
        """The mouths [W,81] (z-scores) that the audio window [F,D] (``model.audio_window``) estimates for the frames
        the lip feature reads: what the avatar's lips follow when audio drives them."""
        with torch.inference_mode():
            return self.model.mouth(torch.from_numpy(np.ascontiguousarray(audio, np.float32)))

    def tracked_mouths(self, source: int) -> torch.Tensor:
        """The footage's own tracked mouths [W,81] (z-scores) around frame ``source``, as training fed them."""
        return torch.from_numpy(self.model.mouth_window(self.mouths, source, len(self.mouths) - 1))

    def lip_from(self, mouths: torch.Tensor) -> torch.Tensor:
        """The lip feature [A] of a window of mouths [W,81] (``estimated_mouths`` or ``tracked_mouths``)."""
        with torch.inference_mode():
            return self.model.lip_from_mouth(mouths)

    def lip(self, audio: np.ndarray) -> torch.Tensor:
        """The lip feature [A] that the audio window [F,D] (``model.audio_window``) drives: how the avatar speaks."""
        return self.lip_from(self.estimated_mouths(audio))

    def tracked_lip(self, source: int) -> torch.Tensor:
        """The lip feature [A] of the footage's own tracked mouths around frame ``source``: the avatar replays the
        footage's lips, the renderer's best case, with no audio-to-mouth estimate between."""
        return self.lip_from(self.tracked_mouths(source))

    def gaussians(self, lip: torch.Tensor, expr: np.ndarray) -> dict[str, torch.Tensor]:
        """``rasterize``'s Gaussians [N,...] driven by the lip feature [A] (``lip`` or ``tracked_lip``) and the
        expression [E]: through the baked bases once ``bake`` has run, else the exact network."""
        expr_t = torch.from_numpy(np.ascontiguousarray(expr, np.float32))
        with torch.inference_mode():
            if self.baked is not None:
                return self.baked.gaussians(lip, expr_t)
            return self.model.gaussians(lip, expr_t, self.canonical)

    def bake(self, features: np.ndarray | None = None, config: BakeConfig = BakeConfig(),
             cancel: CancelToken | None = None) -> BakedDeformation:
        """Bake the deformation for real time (core.avatar.bake) on the footage's frames with a face, their lips
        driven by their tracked mouths and, given the footage's audio features [T,D], by their audio; from then on
        this driver's frames go through it."""
        frames = np.flatnonzero(self.views.valid)
        lips = [self.tracked_lip(i) for i in frames]
        if features is not None:
            lips += [self.lip(self.model.audio_window(features, i)) for i in frames]
        self.baked = None                                     # the coverage frames through the network
        picks = np.linspace(0, len(frames) - 1, config.coverage_frames).astype(int)
        seen = [(self.gaussians(lips[j], self.views.expr[frames[j]]), self.views.camera(frames[j])) for j in picks]
        self.baked = bake(self.model, self.canonical, torch.stack(lips).numpy(), self.views.expr[frames], config,
                          cancel, seen)
        return self.baked

    def render(self, source: int, lip: torch.Tensor, expr: np.ndarray, pose: Pose | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rgb float32 [S,S,3], alpha float32 [S,S]) of the face crop of source frame ``source``, driven by the
        lip feature [A] and the expression [E], under the frame's stabilized head pose or ``pose`` (an edited one:
        rot [3,3], trans [3])."""
        return self.draw(source, self.gaussians(lip, expr), pose)

    def draw(self, source: int, gaussians: dict[str, torch.Tensor], pose: Pose | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """``render`` of Gaussians already driven (``gaussians``)."""
        camera = (self.views.camera(source) if pose is None else
                  self.views.crops.camera(source, *pose, *self.views.intrinsics))
        with torch.inference_mode():
            out = rasterize(**gaussians, camera=camera, background=torch.zeros(3), backend=self.config.backend)
        return out.rgb.clamp(0, 1).numpy(), out.alpha[..., 0].numpy()

    def frame(self, source_frame: np.ndarray, source: int, lip: torch.Tensor, expr: np.ndarray,
              pose: Pose | None = None) -> np.ndarray:
        """uint8 [H,W,3]: ``source_frame`` (frame ``source`` of the footage) with the driven face blended in; under
        an edited ``pose`` the blend's face oval moves with the head."""
        return self.blend(source_frame, source, self.gaussians(lip, expr), pose)

    def blend(self, source_frame: np.ndarray, source: int, gaussians: dict[str, torch.Tensor],
              pose: Pose | None = None) -> np.ndarray:
        """``frame`` of Gaussians already driven (``gaussians``)."""
        rgb, _ = self.draw(source, gaussians, pose)
        h, w = source_frame.shape[:2]
        full = self.views.crops.paste(rgb, source, (w, h))                                # [H,W,3]
        return composite(source_frame, full, self.landmarks(source, pose), self.portrait)

    def landmarks(self, source: int, pose: Pose | None = None) -> np.ndarray:
        """float [478,2]: frame ``source``'s landmarks, moved as the fitted head moves from the stabilized pose to
        ``pose`` (the iris points with the mean motion)."""
        marks = self.views.landmarks[source]
        if pose is None:
            return marks
        intrinsics = self.views.intrinsics
        moved = (project(self.template, *pose, *intrinsics)
                 - project(self.template, self.views.rot[source], self.views.trans[source], *intrinsics))  # [468,2]
        out = np.array(marks, np.float32)
        out[:len(moved)] += moved
        out[len(moved):] += moved.mean(axis=0)
        return out
