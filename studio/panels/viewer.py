"""Viewer: the current frame, letterboxed to the panel, with its frame number and timecode (and the file's name
when a dub is shown in the footage's place)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.tracking.pose import project
from core.tracking.template import canonical_mesh
from studio.state import StudioState
from studio.timecode import timecode


class ViewerPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.shown_index: int | None = None       # the frame on screen now
        self.shown_frame: np.ndarray | None = None  # uint8 [H,W,3], kept alive for the QImage
        self._image: QImage | None = None
        self._edges: np.ndarray | None = None  # int32 [E,2] unique template edges, built on first use
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        state.footage_changed.connect(self._clear)
        state.tracking_changed.connect(self.update)
        state.overlays_changed.connect(self.update)  # the tracked landmarks, the mesh in the stabilized pose

    def show_frame(self, index: int, rgb: np.ndarray) -> None:
        """Display decoded frame ``index`` (uint8 [H,W,3]); stale answers for older requests are dropped."""
        if self.state.footage is None or index != self.state.frame:
            return
        rgb = np.ascontiguousarray(rgb)
        h, w, _ = rgb.shape
        self.shown_index, self.shown_frame = index, rgb
        self._image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self.update()

    def _clear(self) -> None:
        self.shown_index = self.shown_frame = self._image = None
        self.update()

    def image_rect(self) -> QRect:
        """Where the frame is drawn: as large as fits, centred, aspect kept."""
        if self._image is None:
            return QRect()
        iw, ih = self._image.width(), self._image.height()
        s = min(self.width() / iw, self.height() / ih)
        w, h = int(iw * s), int(ih * s)
        return QRect((self.width() - w) // 2, (self.height() - h) // 2, w, h)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(18, 18, 20))
        if self._image is None:
            p.setPen(QColor(140, 140, 150))
            text = "Loading…" if self.state.footage else "No footage: File ▸ Import Footage…"
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, text)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(self.image_rect(), self._image)
        self._paint_overlays(p)
        fp = self.state.footage
        if fp is not None and self.shown_index is not None:
            label = f"{timecode(self.shown_index, fp.fps)}   frame {self.shown_index} / {fp.frame_count - 1}"
            if self.state.preview is not None:
                label = f"{self.state.preview.name}   {label}"
            p.setPen(QColor(0, 0, 0, 160))
            r = QRect(8, self.height() - 28, self.width() - 16, 20)
            p.drawText(r.translated(1, 1), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
            p.setPen(QColor(235, 235, 235))
            p.drawText(r, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)

    def _to_widget(self, pts: np.ndarray) -> np.ndarray:
        """Image pixels [N,2] -> widget coordinates [N,2] (pixel centres)."""
        r = self.image_rect()
        k = r.width() / self._image.width()
        return (pts + 0.5) * k + np.array([r.x(), r.y()])

    def _paint_overlays(self, p: QPainter) -> None:
        tr, i = self.state.tracking, self.shown_index
        if self.state.preview is not None:
            return  # the tracking is the footage's, not the dub's
        if tr is None or i is None or i >= len(tr["valid"]) or not any(self.state.overlays.values()):
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.state.overlays["mesh"]:
            if self._edges is None:
                e = np.sort(canonical_mesh().triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
                self._edges = np.unique(e, axis=0)
            verts = tr["template"]  # [468,3] head space, the subject's fitted shape
            uv = project(verts, tr["rot"][i], tr["trans"][i], float(tr["focal"]), float(tr["cx"]), float(tr["cy"]))
            w = self._to_widget(uv)
            p.setPen(QPen(QColor(90, 200, 255, 120), 1))
            p.drawLines([QLineF(*w[a], *w[b]) for a, b in self._edges])
        if self.state.overlays["landmarks"]:
            w = self._to_widget(tr["landmarks"][i])
            color = QColor(120, 255, 120) if tr["detected"][i] else QColor(255, 150, 60)  # orange: interpolated
            p.setPen(QPen(color, 2.5))
            p.drawPoints([QPointF(x, y) for x, y in w])
