"""Timeline: transport controls, the audio waveform and a playhead to scrub, and the expression edits' key lanes
under it on the same frames (pyqtgraph)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSpinBox, QStyle, QToolButton, QVBoxLayout, QWidget

from core.tracking.track import without_face
from studio.panels.key_lanes import KeyLanes
from studio.state import StudioState
from studio.timecode import timecode


def waveform_envelope(audio: np.ndarray, rate: int, fps: float, bins: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope of ``audio`` [S] in ``bins`` buckets: x in frames [B], lo [B], hi [B]."""
    n = len(audio)
    bins = max(1, min(bins, n))
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(audio, edges[:-1]) if n else np.zeros(1, np.float32)
    hi = np.maximum.reduceat(audio, edges[:-1]) if n else np.zeros(1, np.float32)
    x = (edges[:-1] + edges[1:]) / 2 / rate * fps
    return x, lo, hi


class ScrubViewBox(pg.ViewBox):
    """A left click seeks and a left-drag scrubs the playhead, as in editing tools; Alt+left-drag or a middle-drag
    pans, the wheel zooms."""

    def __init__(self, scrub) -> None:
        super().__init__()
        self._scrub = scrub  # called with the frame under the pointer

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == Qt.MouseButton.LeftButton and not ev.modifiers() & Qt.KeyboardModifier.AltModifier:
            ev.accept()
            self._scrub(self.mapSceneToView(ev.scenePos()).x())
        else:
            super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._scrub(self.mapSceneToView(ev.scenePos()).x())
        else:
            super().mouseClickEvent(ev)


class TimecodeAxis(pg.AxisItem):
    def __init__(self, state: StudioState):
        super().__init__(orientation="bottom")
        self.state = state

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        fp = self.state.footage
        if fp is None:
            return super().tickStrings(values, scale, spacing)
        return [timecode(int(round(v)), fp.fps) if v >= 0 else "" for v in values]


class TimelinePanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state, self.playback = state, state.playback
        playback = state.playback

        icon = self.style().standardIcon
        px = QStyle.StandardPixmap
        self._play_icon, self._pause_icon = icon(px.SP_MediaPlay), icon(px.SP_MediaPause)
        self.play_button = self._button(self._play_icon, "Play / pause (Space)", playback.toggle)
        buttons = [self._button(icon(px.SP_MediaSkipBackward), "First frame (Home)", lambda: self._seek(0)),
                   self._button(icon(px.SP_MediaSeekBackward), "Previous frame (Left)", lambda: playback.step(-1)),
                   self.play_button,
                   self._button(icon(px.SP_MediaSeekForward), "Next frame (Right)", lambda: playback.step(1)),
                   self._button(icon(px.SP_MediaSkipForward), "Last frame (End)",
                                lambda: self._seek(state.frame_count - 1))]
        self.frame_box = QSpinBox()
        self.frame_box.setToolTip("Current frame")
        self.frame_box.setKeyboardTracking(False)
        # Typed into only when clicked, and left once entered: Space, arrows, J/K/L stay the transport's even when
        # focus moves on from a button that a job disabled (Track Face).
        self.frame_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # the panel itself holds focus without taking keys
        self.frame_box.editingFinished.connect(self.setFocus)
        self.frame_box.valueChanged.connect(self._seek)
        self.timecode_label = QLabel("--:--:--:--")
        self.timecode_label.setObjectName("timecode")
        self.speed_label = QLabel("")

        bar = QHBoxLayout()
        for b in buttons:
            bar.addWidget(b)
        bar.addSpacing(12)
        bar.addWidget(self.timecode_label)
        bar.addWidget(self.frame_box)
        bar.addWidget(self.speed_label)
        bar.addStretch(1)

        self.plot = pg.PlotWidget(axisItems={"bottom": TimecodeAxis(state)},
                                  viewBox=ScrubViewBox(lambda x: self.state.footage and self._seek(int(round(x)))))
        self.plot.setBackground((24, 24, 28))
        left = self.plot.getAxis("left")  # as wide as the key lanes' names, so both share their frames' x
        left.setTicks([[]])
        left.setStyle(showValues=False)
        left.setLabel("audio")
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.setYRange(-1, 1, padding=0.05)
        self.plot.setMinimumHeight(90)
        self._lo = pg.PlotDataItem(pen=pg.mkPen((90, 170, 240), width=1))
        self._hi = pg.PlotDataItem(pen=pg.mkPen((90, 170, 240), width=1))
        self.plot.addItem(pg.FillBetweenItem(self._lo, self._hi, brush=pg.mkBrush(90, 170, 240, 110)))
        self.plot.addItem(self._lo)
        self.plot.addItem(self._hi)
        self.cursor = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=pg.mkPen((255, 200, 60), width=2),
                                      hoverPen=pg.mkPen((255, 230, 120), width=3))
        self.cursor.sigPositionChanged.connect(lambda line: self._seek(int(round(line.value()))))
        self.plot.addItem(self.cursor)
        self.faceless: list[pg.LinearRegionItem] = []  # shaded spans of frames with no face in view
        left.setWidth(120)
        self.lanes = KeyLanes(state, lambda x: self.state.footage and self._seek(int(round(x))))
        self.lanes.setXLink(self.plot)

        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.lanes)

        state.footage_changed.connect(self._footage_changed)
        state.tracking_changed.connect(self._show_faceless)
        state.footage_changed.connect(self._show_faceless)  # a dub shown in the footage's place has none
        state.frame_changed.connect(self._frame_changed)
        state.playing_changed.connect(lambda on: self.play_button.setIcon(self._pause_icon if on else self._play_icon))
        playback.speed_changed.connect(lambda s: self.speed_label.setText(f"{s:+g}×" if s not in (0, 1) else ""))
        self._footage_changed()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(800, 200)

    def _button(self, icon: QIcon, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setIcon(icon)
        b.setToolTip(tip)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the window's shortcuts
        b.clicked.connect(slot)
        return b

    def _seek(self, frame: int) -> None:
        if self.state.playing and frame != self.state.frame:
            self.playback.stop()
        self.state.set_frame(frame)

    def _footage_changed(self) -> None:
        fp = self.state.footage
        has = fp is not None
        self.frame_box.setEnabled(has)
        self.cursor.setVisible(has)
        if not has:
            self._lo.setData([], [])
            self._hi.setData([], [])
            self.timecode_label.setText("--:--:--:--")
            return
        x, lo, hi = waveform_envelope(fp.audio, fp.audio_rate, float(fp.fps))
        self._lo.setData(x, lo)
        self._hi.setData(x, hi)
        self.frame_box.blockSignals(True)
        self.frame_box.setRange(0, fp.frame_count - 1)
        self.frame_box.blockSignals(False)
        self.cursor.blockSignals(True)  # clamping the old playhead to shorter footage is no seek: frame_changed follows
        self.cursor.setBounds((0, fp.frame_count - 1))
        self.cursor.blockSignals(False)
        # The limits first: the range of footage longer than the last would be clamped to the last's limits.
        self.plot.getPlotItem().vb.setLimits(xMin=-0.05 * fp.frame_count, xMax=1.05 * fp.frame_count)
        self.plot.setXRange(0, fp.frame_count - 1, padding=0.01)

    def _show_faceless(self) -> None:
        """Shade the spans where tracking found no face: training skips them and a dub shows them as they are."""
        for region in self.faceless:
            self.plot.removeItem(region)
        tr = self.state.tracking
        spans = without_face(np.asarray(tr["valid"], bool)) if tr is not None and self.state.preview is None else []
        self.faceless = []
        for first, end in spans:
            region = pg.LinearRegionItem((first - 0.5, end - 0.5), movable=False, brush=pg.mkBrush(220, 80, 80, 60),
                                         pen=pg.mkPen(None))
            region.setToolTip(f"No face in view: frames {first}-{end - 1}")
            region.setZValue(-10)
            self.plot.addItem(region)
            self.faceless.append(region)

    def _frame_changed(self, frame: int) -> None:
        fp = self.state.footage
        if fp is None:
            return
        self.cursor.blockSignals(True)
        self.cursor.setValue(frame)
        self.cursor.blockSignals(False)
        self.frame_box.blockSignals(True)
        self.frame_box.setValue(frame)
        self.frame_box.blockSignals(False)
        self.timecode_label.setText(timecode(frame, fp.fps))
