"""Project panel: the project's folder and its footage, with a warning and Relink when the source moved."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from core.project import FootageStatus
from studio.state import StudioState

VIDEO_FILTER = "Video (*.mp4 *.mov *.mkv *.avi *.m4v *.webm);;All files (*)"


class ProjectPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self._labels: dict[str, QLabel] = {}
        form = QFormLayout()
        for key in ("Project", "Folder", "Footage", "Format", "Video", "Audio", "Status"):
            label = QLabel("—")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self._labels[key] = label
            form.addRow(f"{key}:", label)
        self.relink_button = QPushButton("Relink footage…")
        self.relink_button.clicked.connect(self._relink_dialog)
        self.relink_button.hide()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.relink_button)
        layout.addStretch(1)
        state.project_changed.connect(self.refresh)
        state.footage_changed.connect(self.refresh)
        self.refresh()

    def text(self, key: str) -> str:
        return self._labels[key].text()

    def _relink_dialog(self) -> None:
        """Ask where the footage went, starting where it was."""
        pr = self.state.project
        path, _ = QFileDialog.getOpenFileName(self, "Relink footage", str(Path(pr.footage.path).parent), VIDEO_FILTER)
        if path:
            self.state.relink_footage(path)

    def refresh(self) -> None:
        pr = self.state.project
        for label in self._labels.values():
            label.setText("—")
        self.relink_button.hide()
        if pr is None:
            self._labels["Project"].setText("No project: File ▸ New Project… or Open Project…")
            return
        self._labels["Project"].setText(pr.name)
        self._labels["Folder"].setText(str(pr.root))
        if pr.footage is None:
            self._labels["Footage"].setText("none: File ▸ Import Footage…")
            return
        i = pr.footage.info
        self._labels["Footage"].setText(Path(pr.footage.path).name)
        self._labels["Footage"].setToolTip(pr.footage.path)
        self._labels["Format"].setText(f"{i['width']}×{i['height']}, {i['fps']} fps, {i['frame_count']} frames, {i['duration']:.2f} s")
        self._labels["Video"].setText(f"{i['video_codec']} ({i['container']})")
        self._labels["Audio"].setText(", ".join(f"{a['codec']} {a['sample_rate']} Hz {a['channels']} ch" for a in i["audio"]) or "none")
        status = self.state.footage_status
        self._labels["Status"].setText({
            None: "checking…",
            FootageStatus.OK: "OK",
            FootageStatus.MISSING: "Missing: the source was moved or deleted. Relink it.",
            FootageStatus.CHANGED: "Changed: the source's content differs from what was imported.",
        }[status])
        self.relink_button.setVisible(status is FootageStatus.MISSING)
