"""Pose Curves: yaw, pitch, roll, tx, ty, tz per frame, raw fit against stabilized, plus any
blendshape curves the user ticks. The cursor follows the playhead; clicking a curve seeks."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout, QWidget

from core.tracking.pose import euler_degrees
from studio.state import StudioState

POSE_CURVES = ("yaw", "pitch", "roll", "tx", "ty", "tz")
RAW_PEN = pg.mkPen((200, 200, 215), width=1)
STABLE_PEN = pg.mkPen((255, 200, 60), width=2)


def pose_series(tracking: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> (raw [T], stabilized [T]): Euler angles in degrees, translation as fitted."""
    raw = np.concatenate([euler_degrees(tracking["rot_raw"]), tracking["trans_raw"]], axis=1)  # [T,6]
    stable = np.concatenate([euler_degrees(tracking["rot"]), tracking["trans"]], axis=1)  # [T,6]
    return {name: (raw[:, i], stable[:, i]) for i, name in enumerate(POSE_CURVES)}


class PoseCurvesPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground((24, 24, 28))
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self.cursors: list[pg.InfiniteLine] = []
        for row, name in enumerate((*POSE_CURVES, "blendshapes")):
            plot = self.graphics.addPlot(row=row, col=0)
            plot.setLabel("left", name)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=True, y=False)
            plot.getAxis("left").setWidth(48)
            plot.getAxis("left").enableAutoSIPrefix(False)  # degrees, head units, coefficients: no "x0.001"
            if row:
                plot.setXLink(self.plots["yaw"])
            if name != "blendshapes":
                raw, stable = plot.plot(pen=RAW_PEN, name="raw"), plot.plot(pen=STABLE_PEN, name="stabilized")
                raw.setZValue(1)  # the thin raw line stays visible over the thick stabilized one
                self.curves[name] = (raw, stable)
            cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((90, 170, 240), width=1))
            plot.addItem(cursor)
            self.cursors.append(cursor)
            self.plots[name] = plot
        self.plots["blendshapes"].setYRange(0, 1, padding=0.05)
        self.plots["yaw"].addLegend(offset=(-10, 5))
        self.plots["yaw"].legend.addItem(self.curves["yaw"][0], "raw")
        self.plots["yaw"].legend.addItem(self.curves["yaw"][1], "stabilized")
        self.blend_curves: dict[str, pg.PlotDataItem] = {}
        self.graphics.scene().sigMouseClicked.connect(self._clicked)

        self.blend_list = QListWidget()
        self.blend_list.setMaximumWidth(180)
        self.blend_list.itemChanged.connect(self._blend_toggled)
        side = QVBoxLayout()
        side.addWidget(QLabel("Blendshapes"))
        side.addWidget(self.blend_list)
        side_widget = QWidget()
        side_widget.setLayout(side)
        split = QSplitter()
        split.addWidget(self.graphics)
        split.addWidget(side_widget)
        split.setStretchFactor(0, 4)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(split)

        state.tracking_changed.connect(self.refresh)
        state.frame_changed.connect(self._frame_changed)
        self.refresh()

    def refresh(self) -> None:
        tr = self.state.tracking
        self.blend_list.blockSignals(True)
        self.blend_list.clear()
        for item in self.blend_curves.values():
            self.plots["blendshapes"].removeItem(item)
        self.blend_curves.clear()
        if tr is None:
            for raw, stable in self.curves.values():
                raw.setData([], [])
                stable.setData([], [])
            self.blend_list.blockSignals(False)
            return
        frames = np.arange(len(tr["rot"]))
        for name, (raw, stable) in pose_series(tr).items():
            self.curves[name][0].setData(frames, raw)
            self.curves[name][1].setData(frames, stable)
        for name in tr["blendshape_names"]:
            item = QListWidgetItem(str(name))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.blend_list.addItem(item)
        self.blend_list.blockSignals(False)
        for default in ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen"):
            self.set_blendshape_visible(default, True)
        self.plots["yaw"].setXRange(0, len(frames) - 1, padding=0.01)
        self._frame_changed(self.state.frame)

    def set_blendshape_visible(self, name: str, visible: bool) -> None:
        items = self.blend_list.findItems(name, Qt.MatchFlag.MatchExactly)
        if items:
            items[0].setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def _blend_toggled(self, item: QListWidgetItem) -> None:
        tr, name = self.state.tracking, item.text()
        if tr is None:
            return
        if item.checkState() == Qt.CheckState.Checked and name not in self.blend_curves:
            i = list(tr["blendshape_names"]).index(name)
            color = pg.intColor(i, hues=13)
            self.blend_curves[name] = self.plots["blendshapes"].plot(tr["blendshapes"][:, i], pen=pg.mkPen(color, width=1.5))
        elif item.checkState() != Qt.CheckState.Checked and name in self.blend_curves:
            self.plots["blendshapes"].removeItem(self.blend_curves.pop(name))

    def _frame_changed(self, frame: int) -> None:
        for cursor in self.cursors:
            cursor.setValue(frame)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.state.tracking is None:
            return
        for plot in self.plots.values():
            if plot.sceneBoundingRect().contains(event.scenePos()):
                self.state.set_frame(int(round(plot.vb.mapSceneToView(event.scenePos()).x())))
                return
