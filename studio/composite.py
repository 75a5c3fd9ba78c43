"""The avatar in context: a footage frame with the trained avatar blended in through the Portrait-Sync compositing,
driven by the footage's own audio and the edited expression and pose, as a dub would show it. Made on a fetcher
thread (``studio.frames``), the newest request winning, so a slider drag shows its latest value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.audio.features import load_features
from core.avatar.drive import Driver
from core.avatar.views import expression_of
from core.expression.keyframes import Edits
from core.media import FrameReader
from core.project import Project
from core.tracking.track import load_tracking


@dataclass
class Composited:
    index: int
    footage: np.ndarray     # uint8 [H,W,3] the footage's frame
    picture: np.ndarray     # uint8 [H,W,3] the same frame with the avatar blended in (the footage's, faceless)
    edits: Edits            # the edits it was made under
    stabilizer: float       # the strength of the stabilized pose it was made with


class CompositeFrames:
    """Frame index -> ``Composited`` under the edits set last (``edits``, ``performance``, ``pose``: the edit
    session's, replaced together from the UI thread by ``show``, read here once per frame). Loads the avatar on
    first use, on the fetcher's thread."""

    def __init__(self, project: Project):
        self.project = project
        self._shown: tuple[Edits, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None, float] = \
            (Edits(), None, None, 1.0)
        self._driver: Driver | None = None
        self._reader: FrameReader | None = None
        self._lips: tuple[int, torch.Tensor] | None = None  # the last frame's lip feature: edits do not change it

    def show(self, edits: Edits, performance: np.ndarray | None, pose: tuple[np.ndarray, np.ndarray],
             stabilizer: float) -> None:
        """Make frames under ``edits`` over ``performance`` [T,52] and ``pose`` (rot [T,3,3], trans [T,3]),
        stabilized at ``stabilizer`` (at 1, the tracking's pose: the avatar's own cameras are used)."""
        self._shown = (edits, performance, pose if stabilizer != 1.0 else None, stabilizer)

    def __call__(self, index: int) -> Composited:
        if self._driver is None:
            tracking = load_tracking(self.project)
            self._driver = Driver.load(self.project, tracking)
            self._features = np.ascontiguousarray(load_features(self.project).features, np.float32)  # [T,D]
            self._tracked = np.asarray(tracking["blendshapes"], np.float32)
            self._reader = FrameReader(self.project.checked_footage().path)
        driver = self._driver
        i = min(max(index, 0), len(driver.views) - 1)
        footage = self._reader.read(i)
        edits, performance, stabilized, strength = self._shown
        if not driver.views.valid[i]:
            return Composited(i, footage, footage, edits, strength)
        performance = performance if performance is not None else self._tracked
        shapes = edits.apply(performance[i:i + 1], np.array([i]))                        # [1,52]
        pose = None
        if edits.posed or stabilized is not None:
            rot, trans = stabilized if stabilized is not None else (driver.views.rot, driver.views.trans)
            rot, trans = edits.pose(rot[i:i + 1], trans[i:i + 1], np.array([i]))
            pose = (rot[0], trans[0])
        if self._lips is None or self._lips[0] != i:
            self._lips = (i, driver.lip(driver.model.audio_window(self._features, i)))
        picture = driver.frame(footage, i, self._lips[1], expression_of(shapes[0]), pose)
        return Composited(i, footage, picture, edits, strength)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
