"""Training curves, shared by the panels that train (Audio, Training): one dark plot style, and curves that grow
one point per training step from ``JobWorker.metrics``."""

from __future__ import annotations

import math

import pyqtgraph as pg

BACKGROUND = (24, 24, 28)


def training_graphics(top: str, bottom: str) -> tuple[pg.GraphicsLayoutWidget, pg.PlotItem, pg.PlotItem]:
    """Two plots, one above the other, labelled ``top`` and ``bottom``, sharing the step axis."""
    graphics = pg.GraphicsLayoutWidget()
    graphics.setBackground(BACKGROUND)
    upper, lower = training_plot(graphics, 0, top), training_plot(graphics, 1, bottom)
    lower.setLabel("bottom", "step")
    lower.setXLink(upper)
    return graphics, upper, lower


def training_plot(graphics: pg.GraphicsLayoutWidget, row: int, label: str) -> pg.PlotItem:
    """A plot in row ``row`` of ``graphics``: labelled, gridded, with a legend that stays legible over curves."""
    plot = graphics.addPlot(row=row, col=0)
    plot.setLabel("left", label)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.getAxis("left").setWidth(48)
    plot.getAxis("left").enableAutoSIPrefix(False)
    plot.addLegend(offset=(-10, 5), labelTextColor=(220, 220, 225), brush=(24, 24, 28, 200))
    return plot


class MetricCurves:
    """Curves against the training step, keyed by metric name: ``append`` gives every curve whose metric has a
    finite value a point at that step (a metrics dict carries "step" and any of the keys)."""

    def __init__(self) -> None:
        self.items: dict[str, pg.PlotDataItem] = {}
        self.points: dict[str, tuple[list[float], list[float]]] = {}

    def add(self, key: str, item: pg.PlotDataItem) -> None:
        self.items[key] = item
        self.points[key] = ([], [])

    def __getitem__(self, key: str) -> pg.PlotDataItem:
        return self.items[key]

    def append(self, metrics: dict) -> None:
        step = metrics.get("step")
        if step is None:
            return
        for key, (xs, ys) in self.points.items():
            value = metrics.get(key)
            if value is not None and math.isfinite(value):
                xs.append(float(step))
                ys.append(float(value))
                self.items[key].setData(xs, ys)

    def clear(self) -> None:
        for key, (xs, ys) in self.points.items():
            xs.clear()
            ys.clear()
            self.items[key].setData([], [])
