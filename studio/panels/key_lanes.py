"""The timeline's key lanes: a row per keyed control (and the selected one), its keys as diamonds under the
waveform's frames. Click a key to select it (Delete removes it), drag it along its lane to move it, Alt-drag to copy
it; a click or drag off the keys scrubs the playhead, as on the waveform."""

from __future__ import annotations

from itertools import count

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from core.expression.keyframes import CHANNELS
from studio.state import StudioState

ROW_PX = 18
PICK_PX = 7   # how near the pointer a key is picked


class LaneAxis(pg.AxisItem):
    """The left axis: each row's control name."""

    def __init__(self) -> None:
        super().__init__(orientation="left")
        self.names: list[str] = []

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph API
        return [(1.0, list(range(len(self.names))))]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        return [self.names[int(v)] if 0 <= int(v) < len(self.names) else "" for v in values]


class LaneViewBox(pg.ViewBox):
    def __init__(self, lanes: KeyLanes) -> None:
        super().__init__()
        self.lanes = lanes
        self._dragging: tuple[str, int] | None = None  # the key being dragged: its control and current frame
        self._drags = count()
        self._token: object = None
        self._copy = False  # an Alt-drag copies the key on its first move

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseClickEvent(ev)
        ev.accept()
        hit = self.lanes.key_under(ev.scenePos())
        edits = self.lanes.state.edits
        if hit is not None:
            edits.select_key(hit)
        else:
            edits.select_key(None)
            self.lanes.scrub(self.mapSceneToView(ev.scenePos()).x())

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        edits = self.lanes.state.edits
        if ev.isStart():
            self._dragging = self.lanes.key_under(ev.buttonDownScenePos())
            self._token = ("lane", next(self._drags))
            self._copy = bool(ev.modifiers() & Qt.KeyboardModifier.AltModifier)
        frame = int(round(self.mapSceneToView(ev.scenePos()).x()))
        if self._dragging is None:
            self.lanes.scrub(frame)
            return
        channel, at = self._dragging
        frame = max(0, min(frame, edits.frames - 1))
        if frame != at:
            edits.move_key(channel, at, frame, copy=self._copy, merge=self._token)
            self._copy = False  # the copy is made once; the rest of the drag moves it
            self._dragging = (channel, frame)
        if ev.isFinish():
            self._dragging = None


class KeyLanes(pg.PlotWidget):
    def __init__(self, state: StudioState, scrub) -> None:
        self.axis = LaneAxis()
        super().__init__(axisItems={"left": self.axis}, viewBox=LaneViewBox(self))
        self.state = state
        self.scrub = scrub  # seeks the playhead to a frame
        self.setBackground((30, 30, 36))
        self.setMenuEnabled(False)
        self.getPlotItem().hideButtons()
        self.hideAxis("bottom")
        self.setMouseEnabled(x=True, y=False)
        self.getAxis("left").setWidth(120)
        self.rows: list[str] = []
        self.keys = pg.ScatterPlotItem(symbol="d", size=11, pen=pg.mkPen((20, 20, 20)), brush=pg.mkBrush(240, 190, 60))
        self.selected = pg.ScatterPlotItem(symbol="d", size=15, pen=pg.mkPen((255, 255, 255), width=2),
                                           brush=pg.mkBrush(255, 120, 40))
        self.addItem(self.keys)
        self.addItem(self.selected)
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((255, 200, 60), width=1))
        self.addItem(self.cursor)
        state.edits.changed.connect(self.refresh)
        state.edits.selection_changed.connect(self.refresh)
        state.frame_changed.connect(self.cursor.setValue)
        self.refresh()

    def refresh(self) -> None:
        """One row per keyed control and the selected one, in the controls' order."""
        edits = self.state.edits
        shown = set(edits.edits.lanes) | ({edits.selected} if edits.project is not None else set())
        self.rows = [c for c in CHANNELS if c in shown]
        self.axis.names = self.rows
        points = [(k.frame, row) for row, c in enumerate(self.rows) for k in edits.edits.lane(c).keys]
        self.keys.setData(pos=np.array(points, float).reshape(-1, 2))
        sel = edits.selected_key
        self.selected.setData(pos=np.array([(sel[1], self.rows.index(sel[0]))] if sel and sel[0] in self.rows
                                           else [], float).reshape(-1, 2))
        self.setYRange(-0.6, max(len(self.rows), 1) - 0.4, padding=0)
        self.setFixedHeight(max(2, len(self.rows)) * ROW_PX + 16)
        self.axis.picture = None
        self.axis.update()

    def key_under(self, scene_pos) -> tuple[str, int] | None:
        """(control, frame) of the key nearest the scene point, within a few pixels; None when none is."""
        if not self.rows:
            return None
        vb = self.getPlotItem().vb
        p = vb.mapSceneToView(scene_pos)
        row = int(round(p.y()))
        if not 0 <= row < len(self.rows):
            return None
        frames = [k.frame for k in self.state.edits.edits.lane(self.rows[row]).keys]
        if not frames:
            return None
        px_per_frame = vb.width() / max(1e-9, vb.viewRange()[0][1] - vb.viewRange()[0][0])
        nearest = min(frames, key=lambda f: abs(f - p.x()))
        return (self.rows[row], nearest) if abs(nearest - p.x()) * px_per_frame <= PICK_PX else None
