"""Curves: the curve editor of one control (the selected one): its performance (grey), its edited curve (orange)
and its keys. Drag a key in time and value (Alt-drag copies it), click one to select it and set how the curve
leaves it (smooth, linear, hold); the lane's weight fades the whole edit in or out. A click off the keys seeks."""

from __future__ import annotations

from itertools import count

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.expression.keyframes import CHANNELS, INTERPOLATIONS, MODES, POSE_CHANNELS
from studio.state import StudioState

PICK_PX = 8


class CurveViewBox(pg.ViewBox):
    def __init__(self, panel: CurvesPanel) -> None:
        super().__init__()
        self.panel = panel
        self._key: int | None = None   # the frame of the key being dragged
        self._drags = count()
        self._token: object = None
        self._copy = False

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseClickEvent(ev)
        ev.accept()
        edits = self.panel.state.edits
        frame = self.panel.key_under(ev.scenePos())
        if frame is not None:
            edits.select_key((self.panel.channel, frame))
        else:
            edits.select_key(None)
            if self.panel.state.footage is not None:
                self.panel.state.set_frame(int(round(self.mapSceneToView(ev.scenePos()).x())))

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        if ev.isStart():
            self._key = self.panel.key_under(ev.buttonDownScenePos())
            self._token = ("curve", next(self._drags))
            self._copy = bool(ev.modifiers() & Qt.KeyboardModifier.AltModifier)
        if self._key is None:
            return super().mouseDragEvent(ev, axis)  # pans, as the plot does
        ev.accept()
        edits = self.panel.state.edits
        p = self.mapSceneToView(ev.scenePos())
        frame = max(0, min(int(round(p.x())), edits.frames - 1))
        edits.move_key(self.panel.channel, self._key, frame, self.panel.offset_for(frame, p.y()), self._copy,
                       self._token)
        self._copy = False
        self._key = frame
        if ev.isFinish():
            self._key = None


class CurvesPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.channel_box = QComboBox()
        for c in CHANNELS:
            self.channel_box.addItem(c)
        self.channel_box.currentTextChanged.connect(lambda c: c and self.state.edits.select(c))
        self.interp_box = QComboBox()
        self.interp_box.addItems(INTERPOLATIONS)
        self.interp_box.setToolTip("How the curve leaves the selected key")
        self.interp_box.activated.connect(self._interp_chosen)
        self.weight_box = QDoubleSpinBox()
        self.weight_box.setRange(0.0, 1.0)
        self.weight_box.setSingleStep(0.05)
        self.weight_box.setToolTip("How much of this control's edit is applied: fade it in or out")
        self.weight_box.setKeyboardTracking(False)
        self.weight_box.valueChanged.connect(self._weight_chosen)
        self.mode_box = QComboBox()
        self.mode_box.addItems(MODES)
        self.mode_box.setToolTip("offset: the keys add to the performance; override: they replace it")
        self.mode_box.activated.connect(lambda _i: self.state.edits.set_mode(self.channel,
                                                                            self.mode_box.currentText()))
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Control"))
        bar.addWidget(self.channel_box)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Key"))
        bar.addWidget(self.interp_box)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Weight"))
        bar.addWidget(self.weight_box)
        bar.addWidget(self.mode_box)
        bar.addStretch(1)

        self.plot = pg.PlotWidget(viewBox=CurveViewBox(self))
        self.plot.setBackground((24, 24, 28))
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.addLegend(offset=(-10, 5))
        self.tracked_curve = self.plot.plot(pen=pg.mkPen((170, 170, 185), width=1), name="performance")
        self.edited_curve = self.plot.plot(pen=pg.mkPen((255, 170, 50), width=2), name="edited")
        self.keys = pg.ScatterPlotItem(symbol="d", size=12, pen=pg.mkPen((20, 20, 20)), brush=pg.mkBrush(240, 190, 60))
        self.selected = pg.ScatterPlotItem(symbol="d", size=16, pen=pg.mkPen((255, 255, 255), width=2),
                                           brush=pg.mkBrush(255, 120, 40))
        self.plot.addItem(self.keys)
        self.plot.addItem(self.selected)
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((90, 170, 240), width=1))
        self.plot.addItem(self.cursor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)

        self._channel_shown: str | None = None
        state.edits.changed.connect(self.refresh)
        state.edits.selection_changed.connect(self.refresh)
        state.frame_changed.connect(self.cursor.setValue)
        self.refresh()

    @property
    def channel(self) -> str:
        return self.state.edits.selected

    def offset_for(self, frame: int, shown: float) -> float:
        """The key value that shows ``shown`` on the edited curve at ``frame``."""
        edits = self.state.edits
        if self.channel not in POSE_CHANNELS:
            shown = min(max(shown, 0.0), 1.0)
        return edits.edits.lane(self.channel).key_for(edits.tracked(self.channel, frame), shown)

    def key_under(self, scene_pos) -> int | None:
        """The frame of the key drawn nearest the scene point, within a few pixels."""
        vb = self.plot.getPlotItem().vb
        best, best_d = None, PICK_PX
        xs, ys = self.keys.getData()
        for x, y in zip(xs, ys):
            d = (vb.mapViewToScene(pg.Point(x, y)) - scene_pos).manhattanLength()
            if d <= best_d:
                best, best_d = int(round(x)), d
        return best

    def refresh(self) -> None:
        edits = self.state.edits
        c = self.channel
        self.channel_box.blockSignals(True)
        self.channel_box.setCurrentText(c)
        self.channel_box.blockSignals(False)
        lane = edits.edits.lane(c)
        self.weight_box.blockSignals(True)
        self.weight_box.setValue(lane.weight)
        self.weight_box.blockSignals(False)
        self.weight_box.setEnabled(bool(lane.keys))
        self.mode_box.setCurrentText(lane.mode)
        self.mode_box.setEnabled(bool(lane.keys))
        sel = edits.selected_key
        key = lane.key_at(sel[1]) if sel is not None and sel[0] == c else None
        self.interp_box.setEnabled(key is not None)
        if key is not None:
            self.interp_box.setCurrentText(key.interp)
        if edits.performance is None:
            for item in (self.tracked_curve, self.edited_curve):
                item.setData([], [])
            self.keys.setData(pos=np.zeros((0, 2)))
            self.selected.setData(pos=np.zeros((0, 2)))
            return
        base, edited = edits.curves(c)
        frames = np.arange(len(base))
        self.tracked_curve.setData(frames, base)
        self.edited_curve.setData(frames, edited)
        kf = np.array([k.frame for k in lane.keys], int)
        inside = np.clip(kf, 0, len(base) - 1)
        self.keys.setData(x=kf.astype(float), y=edited[inside])
        self.selected.setData(x=[float(key.frame)] if key else [], y=[edited[min(key.frame, len(base) - 1)]] if key
                              else [])
        self.plot.getPlotItem().setLabel("left", c)
        if c != self._channel_shown:  # framed once per control, so a dragged key does not move the axes
            self._channel_shown = c
            low, high = (0.0, 1.0) if c not in POSE_CHANNELS else (min(base.min(), edited.min()),
                                                                   max(base.max(), edited.max()))
            pad = max(0.05, 0.1 * (high - low))
            self.plot.setXRange(0, len(base) - 1, padding=0.01)
            self.plot.setYRange(low - pad, high + pad, padding=0)

    def _interp_chosen(self, _index: int) -> None:
        sel = self.state.edits.selected_key
        if sel is not None and sel[0] == self.channel:
            self.state.edits.set_interp(sel[0], sel[1], self.interp_box.currentText())

    def _weight_chosen(self, weight: float) -> None:
        self.state.edits.set_weight(self.channel, weight)
