"""Viewer: the current frame, letterboxed to the panel, with its frame number and timecode (and the file's name
when a dub is shown in the footage's place). It shows the footage, the avatar in context (the footage with the
trained avatar blended in, under the edited expression and pose: what a dub shows) or a split wipe of the two,
its line dragged with the mouse."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRect, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.layout import AVATAR_FILE

from core.tracking.pose import project
from core.tracking.template import canonical_mesh
from studio.composite import Composited, CompositeFrames
from studio.frames import FrameFetcher
from studio.state import StudioState
from studio.timecode import timecode

FOOTAGE, AVATAR, SPLIT = "footage", "avatar", "split"  # what the Viewer shows
MODES = {FOOTAGE: "Footage", AVATAR: "Avatar in Context", SPLIT: "Split Wipe"}


def _qimage(rgb: np.ndarray) -> QImage:
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)


class ViewerPanel(QWidget):
    mode_changed = Signal(str)
    composite_shown = Signal(int)  # a composite of this frame is on screen (tests and benchmarks wait on it)

    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.mode = FOOTAGE
        self.wipe = 0.5                             # the split line, a fraction of the picture's width
        self.shown_index: int | None = None       # the frame on screen now
        self.shown_frame: np.ndarray | None = None  # uint8 [H,W,3], kept alive for the QImage
        self.composite: Composited | None = None    # the last avatar-in-context frame made
        self.composite_error: str | None = None     # why there is none (no avatar, a stale one)
        self._image: QImage | None = None
        self._edges: np.ndarray | None = None  # int32 [E,2] unique template edges, built on first use
        self.composites = FrameFetcher()
        self.composites.connect_ready(self._composite_ready)
        self.composites.failed.connect(self._composite_failed, Qt.ConnectionType.QueuedConnection)
        self._source: CompositeFrames | None = None
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        state.footage_changed.connect(self._clear)
        state.tracking_changed.connect(self.update)
        state.overlays_changed.connect(self.update)  # the tracked landmarks, the mesh in the stabilized pose
        state.project_changed.connect(self._load_avatar)
        state.avatar_changed.connect(self._load_avatar)
        state.stages_changed.connect(self._load_avatar)
        state.edits.changed.connect(self._edits_changed)
        state.frame_changed.connect(lambda _i: self._request_composite())
        state.live_frame.connect(self.show_live)
        self.live: np.ndarray | None = None         # uint8 [H,W,3] live mode's frame on screen; None: not live
        self._live_image: QImage | None = None

    # --- avatar in context -------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"the Viewer shows one of {', '.join(MODES)}, not {mode!r}")
        if mode != self.mode:
            self.mode = mode
            self.mode_changed.emit(mode)
            self._request_composite()
            self.update()

    def _load_avatar(self) -> None:
        """A composite source for the open project's trained, current avatar (none otherwise)."""
        pr = self.state.project
        avatar = self.state.stage("avatar")
        usable = pr is not None and pr.path(AVATAR_FILE).is_file() and avatar is not None and avatar.current
        if usable and self._source is not None and self._source.project is pr:
            return
        self.composites.set_source(None)
        if self._source is not None:
            self._source.close()
        self._source = CompositeFrames(pr) if usable else None
        self.composite = None
        self.composite_error = None if usable else (
            "No avatar to show: train one (Avatar ▸ Train Avatar)" if avatar is None or avatar.state == "missing"
            else f"The avatar is stale: {avatar.reason}")
        if self._source is not None:
            self._edits_changed()
        self.update()

    def _edits_changed(self) -> None:
        if self._source is None:
            return
        edits = self.state.edits
        self._source.show(edits.edits, edits.performance, (edits.rot, edits.trans), edits.stabilizer)
        self.composites.set_source(self._source)  # answers made under the old edits are dropped
        self._request_composite()

    def _request_composite(self) -> None:
        if self.mode != FOOTAGE and self._source is not None and self.state.preview is None \
                and self.state.footage is not None:
            self.composites.request(self.state.frame)

    def _composite_ready(self, _index: int, made: Composited) -> None:
        self.composite = made
        self.composite_error = None
        self.update()
        self.composite_shown.emit(made.index)

    def _composite_failed(self, _index: int, message: str) -> None:
        self.composite_error = message
        self.update()

    def shutdown(self) -> None:
        self.composites.close()
        if self._source is not None:
            self._source.close()

    def composited(self) -> bool:
        """Whether the picture on screen is the avatar in context (or the wipe) rather than the footage."""
        return self.mode != FOOTAGE and self.composite is not None and self.state.preview is None

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag_wipe(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag_wipe(event)

    def _drag_wipe(self, event) -> None:
        r = self.image_rect()
        if self.mode == SPLIT and event.buttons() & Qt.MouseButton.LeftButton and r.width() > 0:
            self.wipe = min(1.0, max(0.0, (event.position().x() - r.x()) / r.width()))
            self.update()

    def show_frame(self, index: int, rgb: np.ndarray) -> None:
        """Display decoded frame ``index`` (uint8 [H,W,3]); stale answers for older requests are dropped."""
        if self.state.footage is None or index != self.state.frame:
            return
        rgb = np.ascontiguousarray(rgb)
        h, w, _ = rgb.shape
        self.shown_index, self.shown_frame = index, rgb
        self._image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self.update()

    def show_live(self, frame) -> None:
        """Show live mode's frame (a core.live.session.LiveFrame) in the footage's place; None: live mode ended."""
        self.live = None if frame is None else np.ascontiguousarray(frame.image)
        self._live_image = None if self.live is None else _qimage(self.live)
        self.update()

    def _clear(self) -> None:
        self.shown_index = self.shown_frame = self._image = None
        self.composite = None
        self._request_composite()
        self.update()

    def image_rect(self, image: QImage | None = None) -> QRect:
        """Where the frame (or ``image``) is drawn: as large as fits, centred, aspect kept."""
        image = image or self._image
        if image is None:
            return QRect()
        iw, ih = image.width(), image.height()
        s = min(self.width() / iw, self.height() / ih)
        w, h = int(iw * s), int(ih * s)
        return QRect((self.width() - w) // 2, (self.height() - h) // 2, w, h)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(18, 18, 20))
        if self._live_image is not None:
            self._paint_live(p)
            return
        if self._image is None:
            p.setPen(QColor(140, 140, 150))
            text = "Loading…" if self.state.footage else "No footage: File ▸ Import Footage…"
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, text)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        rect = self.image_rect()
        if self.composited():
            c = self.composite
            p.drawImage(rect, _qimage(c.picture))
            if self.mode == SPLIT:  # the footage left of the line, the avatar right of it
                x = rect.x() + round(self.wipe * rect.width())
                p.save()
                p.setClipRect(QRect(rect.x(), rect.y(), x - rect.x(), rect.height()))
                p.drawImage(rect, _qimage(c.footage))
                p.restore()
                p.setPen(QPen(QColor(255, 200, 60), 2))
                p.drawLine(x, rect.y(), x, rect.bottom())
                p.setPen(QColor(235, 235, 235))
                p.drawText(QRect(rect.x() + 8, rect.y() + 6, 200, 20), Qt.AlignmentFlag.AlignLeft, "Footage")
                p.drawText(QRect(rect.right() - 208, rect.y() + 6, 200, 20), Qt.AlignmentFlag.AlignRight, "Avatar")
        else:
            p.drawImage(rect, self._image)
        self._paint_overlays(p)
        if self.mode != FOOTAGE and self.state.preview is None and (self.composite is None or self.composite_error):
            p.setPen(QColor(255, 200, 120))
            p.drawText(QRect(8, 8, self.width() - 16, 20), Qt.AlignmentFlag.AlignLeft,
                       self.composite_error or "Avatar in context: computing…")
        fp = self.state.footage
        index = self.composite.index if self.composited() else self.shown_index
        if fp is not None and index is not None:
            label = f"{timecode(index, fp.fps)}   frame {index} / {fp.frame_count - 1}"
            if self.state.preview is not None:
                label = f"{self.state.preview.name}   {label}"
            p.setPen(QColor(0, 0, 0, 160))
            r = QRect(8, self.height() - 28, self.width() - 16, 20)
            p.drawText(r.translated(1, 1), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
            p.setPen(QColor(235, 235, 235))
            p.drawText(r, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)

    def _paint_live(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        rect = self.image_rect(self._live_image)
        p.drawImage(rect, self._live_image)
        badge = QRect(rect.x() + 8, rect.y() + 8, 52, 22)
        p.fillRect(badge, QColor(200, 30, 40))
        p.setPen(QColor(255, 255, 255))
        p.drawText(badge, Qt.AlignmentFlag.AlignCenter, "LIVE")

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
