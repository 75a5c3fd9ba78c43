"""Viewport panel: the live splat view with its toolbar (file, Reset view, frames/s)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from core.jobs import CancelToken, Progress, ProgressFn
from core.render.ply import read_ply
from core.render.splats import Splats
from studio.viewport.widget import SplatViewport


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


class ViewportPanel(QWidget):
    def __init__(self):
        super().__init__()
        self.view = SplatViewport()
        self.file_label = QLabel("No splats: File ▸ Open… a .ply")
        self.fps_label = QLabel("")
        self.fps_label.setObjectName("timecode")
        reset = QPushButton("Reset View")
        reset.setToolTip("Back to the source camera (F in the view)")
        reset.clicked.connect(self.view.reset_view)
        bar = QHBoxLayout()
        bar.addWidget(self.file_label, 1)
        bar.addWidget(self.fps_label)
        bar.addWidget(reset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        self.view.fps_changed.connect(lambda fps: self.fps_label.setText(f"{fps:5.1f} fps"))

    def show_splats(self, path: Path, splats: Splats) -> None:
        self.file_label.setText(f"{path.name}: {len(splats):,} splats, SH degree {splats.sh_degree}")
        self.file_label.setToolTip(str(path))
        self.view.set_splats(splats)
