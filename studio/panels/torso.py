"""Torso panel: train the project's Torso Restorer (progress, cancel, resume), its status, and a preview of the
band around the jaw taken out, rebuilt and real, on the held-out frame while training and at the playhead after."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PySide6.QtWidgets import (QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from core.avatar.torso import TorsoConfig, TorsoJob, load_torso, preview
from core.jobs import CancelToken, ProgressFn
from core.layout import TORSO_CHECKPOINT_FILE
from core.media import FrameReader
from core.project import Project
from core.tracking.track import load_tracking
from studio.panels.stage_status import StageStatusLabel
from studio.panels.training import PreviewLabel
from studio.state import StudioState
from studio.workers import JobWorker, start_job


@dataclass
class TorsoPreviewJob:
    """The trained restorer's preview (``core.avatar.torso.preview``) of one footage frame."""

    project: Project
    frame: int
    name: str = "Preview the torso restorer"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> np.ndarray:
        net, config = load_torso(self.project)
        landmarks = load_tracking(self.project)["landmarks"]
        with FrameReader(self.project.checked_footage().path) as reader:
            return preview(net, reader.read(self.frame), landmarks[self.frame], config)


class TorsoPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.steps_box = QSpinBox()
        self.steps_box.setRange(10, 100_000)
        self.steps_box.setSingleStep(100)
        self.steps_box.setValue(TorsoConfig().steps)
        self.steps_box.setToolTip("Training steps, each a batch of crops; the default takes about 5 minutes on 2 "
                                  "cores")
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop; the checkpoint is kept and training again resumes from it")
        self.cancel_button.clicked.connect(state.jobs.cancel)
        self.preview_button = QPushButton("Preview at Playhead")
        self.preview_button.setToolTip("The restorer on the frame under the playhead")
        self.preview_button.clicked.connect(lambda: self.preview_playhead())
        self.hint = QLabel("Track the face first: the restorer learns from the tracked footage.")
        self.hint.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.preview = PreviewLabel("The preview appears as training runs: the band around the jaw taken out, "
                                    "rebuilt by the restorer, and real")
        self.preview.setToolTip("Left: the band around the chin and neck taken out; middle: rebuilt by the restorer; "
                                "right: the real frame")
        self.about = QLabel("Rebuilds the chin, jaw line and neck around the rendered face in a dub, where the "
                            "footage's jaw and the avatar's differ.")
        self.about.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Steps:", self.steps_box)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.cancel_button, self.preview_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.about)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.hint)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        self.stage_status = StageStatusLabel(state, "torso")
        layout.addWidget(self.stage_status)
        layout.addWidget(self.preview, 1)
        self.running = False                   # a training run is under way (not cancelled)
        self.shown_frame: int | None = None    # the footage frame of the preview on show; None: none or training's
        state.project_changed.connect(self.clear)
        state.tracking_changed.connect(self.refresh)
        state.stages_changed.connect(self.refresh)
        self.clear()

    def config(self) -> TorsoConfig:
        return replace(TorsoConfig(), steps=self.steps_box.value())

    def run(self, config: TorsoConfig | None = None) -> JobWorker | None:
        """Train the restorer (``config`` defaults to the panel's steps); resumes an unfinished run's checkpoint."""
        pr = self.state.project
        if pr is None or self.state.tracking is None:
            self.state.notice.emit("Track the face first: the torso restorer learns from the tracked footage.")
            return None
        worker = self.state.jobs.run(TorsoJob(pr, config or self.config()), on_progress=self.on_progress,
                                     on_image=self.on_image, on_finished=lambda _r: self.ended("Trained."),
                                     on_cancelled=self.cancelled,
                                     on_errored=lambda _e: self.ended("Training failed."))
        if worker is None:
            return None
        self.running, self.shown_frame = True, None
        self.message.setText("Starting…")
        self.refresh()
        return worker

    def preview_playhead(self) -> JobWorker | None:
        """Show the trained restorer on the frame under the playhead (on a worker thread)."""
        pr = self.state.project
        if pr is None or not self._current():
            return None
        frame = self.state.frame
        return start_job(TorsoPreviewJob(pr, frame), on_finished=lambda rgb: self.show_preview(rgb, frame),
                         on_errored=lambda e: self.message.setText(f"No preview: {e}"))

    def show_preview(self, rgb: np.ndarray, frame: int | None) -> None:
        self.preview.set_image(rgb)
        self.shown_frame = frame

    def on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        if message:
            self.message.setText(message)

    def on_image(self, rgb: np.ndarray) -> None:
        self.show_preview(rgb, None)

    def ended(self, message: str) -> None:
        self.running = False
        self.message.setText(message)
        self.refresh()

    def cancelled(self) -> None:
        kept = self.state.project is not None and self.state.project.path(TORSO_CHECKPOINT_FILE).is_file()
        self.ended("Cancelled: training again resumes from the last checkpoint." if kept else "Cancelled.")

    def clear(self) -> None:
        self.running, self.shown_frame = False, None
        self.preview.clear_image()
        self.message.clear()
        self.progress.setValue(0)
        self.refresh()

    def _current(self) -> bool:
        s = self.state.stage("torso")
        return s is not None and s.current

    def refresh(self) -> None:
        """Enable what can be done now: on changes of the project, its tracking and stages, and the run."""
        pr = self.state.project
        ready = pr is not None and self.state.tracking is not None
        self.hint.setVisible(pr is not None and not ready)
        resumable = ready and not self.running and pr.path(TORSO_CHECKPOINT_FILE).is_file()
        self.train_button.setEnabled(ready and not self.running)
        self.train_button.setText("Resume" if resumable else "Train")
        self.cancel_button.setEnabled(self.running)
        self.steps_box.setEnabled(not self.running)
        self.preview_button.setEnabled(not self.running and self._current())
        self.progress.setVisible(self.running)
