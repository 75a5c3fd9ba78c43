"""Viewport panel: the live splat view with its toolbar (what it shows, Reset view, frames/s).

It shows a splats file (.ply) or, once the project has a trained avatar, the avatar's Gaussians at the playhead,
driven by the footage's own audio features and tracked expression: playing the footage makes the avatar speak.
The Gaussians are computed on a fetcher thread, the newest frame winning, so playback never waits on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from core.audio.features import load_features
from core.avatar.drive import Driver
from core.avatar.views import expression_of
from core.expression.keyframes import Edits
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AVATAR_FILE
from core.project import Project
from core.render.ply import read_ply
from core.render.splats import Splats
from studio.frames import FrameFetcher
from studio.state import StudioState
from studio.viewport.widget import SplatViewport

FILE, AVATAR = "file", "avatar"  # what the viewport shows
LIVE_RATE = 10                   # live frames' Gaussians shown per second at most
NO_FILE = "No splats: File ▸ Open… a .ply"


@dataclass
class LoadSplatsJob:
    """Read a 3DGS PLY off the UI thread (a trained scene can hold millions of splats)."""

    path: Path
    name: str = "Open splats"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> tuple[Path, Splats]:
        progress(Progress(0.0, f"Reading {self.path.name}"))
        splats = read_ply(self.path)
        progress(Progress(1.0, f"{len(splats):,} splats"))
        return self.path, splats


def gaussians_to_splats(gaussians: dict[str, torch.Tensor]) -> Splats:
    """The rasterizer's activated Gaussians (an AvatarModel's output) in the raw form the GL viewport draws."""
    return Splats(means=gaussians["means"].numpy(), quats=gaussians["quats"].numpy(),
                  log_scales=torch.log(gaussians["scales"]).numpy(),
                  opacity_logits=torch.logit(gaussians["opacities"], eps=1e-6).numpy(),
                  sh=gaussians["colors"].numpy())


class AvatarFrames:
    """Frame index -> the trained avatar's Splats at that frame, driven by the footage's own audio window and the
    edited expression (``edits`` over ``performance``, the edit session's, replaced from the UI thread). Called on
    the fetcher's thread only, where it also loads the avatar and bakes its deformation (core.avatar.bake) on first
    use."""

    def __init__(self, project: Project):
        self.project = project
        self.edits = Edits()
        self.performance: np.ndarray | None = None  # float32 [T,52] the blendshapes the edits go over
        self._driver: Driver | None = None
        self._features: np.ndarray | None = None   # float32 [T,D] the footage's audio features

    def __call__(self, index: int) -> Splats:
        if self._driver is None:
            driver = Driver.load(self.project)
            self._features = np.ascontiguousarray(load_features(self.project).features, np.float32)
            driver.bake(self._features)      # real time: a matrix product a frame instead of the network
            self._driver = driver
        driver = self._driver
        i = min(max(index, 0), len(driver.views) - 1)
        lip = driver.lip(driver.model.audio_window(self._features, i))
        expr = driver.views.expr[i]
        if self.performance is not None:
            expr = expression_of(self.edits.apply(self.performance[i:i + 1], np.array([i]))[0])
        return gaussians_to_splats(driver.gaussians(lip, expr))


class ViewportPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.view = SplatViewport()
        self.mode_box = QComboBox()
        self.mode_box.addItem("Splats file", FILE)
        self.mode_box.addItem("Avatar", AVATAR)
        self.file_label = QLabel(NO_FILE)
        # A long message (a stale avatar's reason) is cut, never widens the window; its tooltip holds all of it.
        self.file_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.fps_label = QLabel("")
        self.fps_label.setObjectName("timecode")
        reset = QPushButton("Reset View")
        reset.setToolTip("Back to the source camera (F in the view)")
        reset.clicked.connect(self.view.reset_view)
        bar = QHBoxLayout()
        bar.addWidget(self.mode_box)
        bar.addWidget(self.file_label, 1)
        bar.addWidget(self.fps_label)
        bar.addWidget(reset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        self.view.fps_changed.connect(lambda fps: self.fps_label.setText(f"{fps:5.1f} fps"))

        self.file_splats: tuple[Path, Splats] | None = None  # the last .ply opened
        self.avatar_source: AvatarFrames | None = None       # the project's avatar, driven frame by frame
        self.avatar_frame: int | None = None                 # the frame whose avatar is on screen
        self.avatar_frames = FrameFetcher()
        self.avatar_frames.connect_ready(self._avatar_ready)
        self.avatar_frames.failed.connect(self._avatar_failed, Qt.ConnectionType.QueuedConnection)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        state.project_changed.connect(self.load_avatar)
        state.avatar_changed.connect(lambda: self.load_avatar(show=True))
        state.frame_changed.connect(self._frame_changed)
        state.edits.changed.connect(self._edits_changed)
        state.live_frame.connect(self.show_live)
        self._live_shown = 0.0                               # when the last live frame's Gaussians went up
        self.load_avatar()

    def mode(self) -> str:
        return self.mode_box.currentData()

    def has_avatar(self) -> bool:
        return self.mode_box.model().item(self.mode_box.findData(AVATAR)).isEnabled()

    def show_splats(self, path: Path, splats: Splats) -> None:
        """Show an opened splats file."""
        self.file_splats = (path, splats)
        self._set_mode(FILE)

    def load_avatar(self, show: bool = False) -> None:
        """(Re)read the project's trained avatar: the Avatar mode is offered when there is one, and chosen when
        ``show`` or no splats file is open; called on project open and after training."""
        pr = self.state.project
        exists = pr is not None and pr.path(AVATAR_FILE).is_file()
        self.avatar_source = AvatarFrames(pr) if exists else None
        self._edits_changed()
        self.mode_box.model().item(self.mode_box.findData(AVATAR)).setEnabled(exists)
        self.mode_box.setItemData(self.mode_box.findData(AVATAR), None if exists else
                                  "Train the avatar first (Avatar ▸ Train Avatar)", Qt.ItemDataRole.ToolTipRole)
        if exists and (show or self.mode() == AVATAR or self.file_splats is None):
            self._set_mode(AVATAR)
        elif not exists and self.mode() == AVATAR:
            self._set_mode(FILE)

    def show_live(self, frame) -> None:
        """Live mode's Gaussians (a core.live.session.LiveFrame's), at most LIVE_RATE times a second and only when
        the Viewport is in view: uploading and drawing them costs the CPU the live frames need. None: live mode
        ended, back to the playhead's avatar."""
        if frame is None:
            self._mode_changed()
            return
        now = time.monotonic()
        if frame.gaussians is None or not self.isVisible() or now - self._live_shown < 1.0 / LIVE_RATE:
            return
        self._live_shown = now
        self.view.set_splats(gaussians_to_splats(frame.gaussians), keep_view=True)
        self.file_label.setText(f"Live: frame {frame.k}")

    def shutdown(self) -> None:
        self.avatar_frames.close()

    def _edits_changed(self) -> None:
        """The avatar follows the edited expression: answers made under the old edits are dropped."""
        source = self.avatar_source
        if source is not None:
            source.edits, source.performance = self.state.edits.edits, self.state.edits.performance
        self.avatar_frames.set_source(source)
        if source is not None and self.mode() == AVATAR and self.isVisible():
            self.avatar_frames.request(self.state.frame)

    # --- view ------------------------------------------------------------------------------------------
    def _set_mode(self, mode: str) -> None:
        if self.mode() == mode:
            self._mode_changed()
        else:
            self.mode_box.setCurrentIndex(self.mode_box.findData(mode))  # -> _mode_changed

    def _mode_changed(self) -> None:
        self.avatar_frame = None
        if self.mode() == AVATAR:
            self.view.set_splats(None)
            self.file_label.setText("Avatar: computing…")
            self.file_label.setToolTip("")
            self.avatar_frames.request(self.state.frame)
            return
        path, splats = self.file_splats or (None, None)
        self.view.set_splats(splats)
        self.file_label.setText(f"{path.name}: {len(splats):,} splats, SH degree {splats.sh_degree}" if path
                                else NO_FILE)
        self.file_label.setToolTip(str(path) if path else "")

    def _frame_changed(self, index: int) -> None:
        if self.mode() == AVATAR and self.isVisible():  # hidden (a tab behind): computed when shown
            self.avatar_frames.request(index)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self.mode() == AVATAR and self.avatar_frame != self.state.frame:
            self.avatar_frames.request(self.state.frame)

    def _avatar_ready(self, index: int, splats: Splats) -> None:
        if self.mode() != AVATAR:
            return
        self.view.set_splats(splats, keep_view=self.avatar_frame is not None)  # framed on the first frame only
        self.avatar_frame = index
        self.file_label.setText(f"Avatar: frame {index}, {len(splats):,} Gaussians")

    def _avatar_failed(self, _index: int, message: str) -> None:
        if self.mode() == AVATAR:
            root = f"{self.state.project.root}: " if self.state.project is not None else ""
            self.file_label.setText(f"Avatar: {message.removeprefix(root) if root else message}")
            self.file_label.setToolTip(message)
