"""Tracking panel: run face tracking (progress, cancel), its summary, and the Viewer's overlays."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from core.tracking.landmarks import LandmarkConfig
from studio.panels.stage_status import StageStatusLabel
from studio.state import StudioState, TrackForViewJob
from studio.workers import JobWorker


class TrackingPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.run_button = QPushButton("Track Face")
        self.run_button.setToolTip("Landmarks, blendshapes, head pose and the Head-Sync Stabilizer")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(state.jobs.cancel)
        self.face_box = QComboBox()
        self.face_box.setToolTip("Whom to follow when several faces are in view")
        self.face_box.addItem("Automatic (largest, most central)", None)
        ordinals = ("leftmost face", "second from the left", "third from the left")
        for i in range(LandmarkConfig().max_faces):  # numbered from 0 as in the CLI's --face and the messages
            self.face_box.addItem(f"{i}: {ordinals[i] if i < len(ordinals) else f'face {i} from the left'}", i)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.message = QLabel()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.landmarks_box = QCheckBox("Landmark overlay")
        self.mesh_box = QCheckBox("Mesh overlay (stabilized pose)")
        self.landmarks_box.toggled.connect(lambda on: state.set_overlays(landmarks=on))
        self.mesh_box.toggled.connect(lambda on: state.set_overlays(mesh=on))
        state.overlays_changed.connect(self._show_overlays)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout()
        form.addRow("Follow:", self.face_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.summary)
        self.stage_status = StageStatusLabel(state, "tracking", only_stale=True)
        layout.addWidget(self.stage_status)
        layout.addWidget(self.landmarks_box)
        layout.addWidget(self.mesh_box)
        layout.addStretch(1)
        state.footage_changed.connect(self._refresh)
        state.tracking_changed.connect(self._refresh)
        self._refresh()

    def run(self) -> JobWorker | None:
        """Track the face through the footage (landmarks, pose, stabilizer) and show the result."""
        if self.state.footage is None:
            self.state.notice.emit("Import footage before tracking.")
            return None
        self.set_running(True)
        worker = self.state.jobs.run(TrackForViewJob(self.state.project, self.face()),
                                     on_finished=self.state.set_tracking, on_progress=self.set_progress,
                                     on_errored=lambda _e: self.set_running(False),
                                     on_cancelled=lambda: self.set_running(False))
        if worker is None:
            self.set_running(False)
        return worker

    def face(self) -> int | None:
        """The face to follow: None = automatic, N = N-th from the left (0-based)."""
        return self.face_box.currentData()

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running and self.state.footage is not None)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setValue(0)

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.message.setText(message)

    def _show_overlays(self) -> None:
        self.landmarks_box.setChecked(self.state.overlays["landmarks"])
        self.mesh_box.setChecked(self.state.overlays["mesh"])

    def _refresh(self) -> None:
        self.set_running(False)
        tr = self.state.tracking
        if self.state.footage is None:
            self.summary.setText("Import footage to track a face.")
        elif tr is None:
            stale = self.state.project is not None and "tracking" in self.state.project.stages
            self.summary.setText("" if stale else "Not tracked yet.")   # stale: the status line says why
        else:
            n, missing = len(tr["valid"]), int((~tr["valid"]).sum())
            gone = (f" No face in view on {missing} frames (shaded on the timeline): training skips them and a dub "
                    "shows them as they are." if missing else "")
            self.summary.setText(
                f"Face on {int(tr['detected'].sum())} of {n} frames ({int((tr['valid'] & ~tr['detected']).sum())} "
                f"interpolated). Focal {float(tr['focal']):.0f} px, rigid reprojection "
                f"{float(np.nanmean(tr['reproj_px'])):.2f} px mean.{gone}")
        if tr is not None and self.state.project is not None and "tracking" in self.state.project.stages:
            used = self.state.project.stages["tracking"].config["landmarks"]["face"]
            self.face_box.setCurrentIndex(max(0, self.face_box.findData(used)))
        self.landmarks_box.setEnabled(tr is not None)
        self.mesh_box.setEnabled(tr is not None)
