"""The live splat viewport under Xvfb: File > Open a .ply, orbit, zoom, reset, frames/s, screenshot."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from core.render.ply import write_ply
from core.render.splats import Splats

pytestmark = pytest.mark.gui


def frame(view) -> np.ndarray:
    """What the viewport shows now: uint8 [H,W,3]."""
    img = view.grabFramebuffer().convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


def test_open_ply_orbit_zoom_reset_and_screenshot(window, qtbot, tmp_path, artifacts_dir):
    ply = tmp_path / "scene.ply"
    write_ply(ply, Splats.random(3000, seed=3, sh_degree=1))
    assert window.open_path(ply)
    qtbot.waitUntil(lambda: window.job is None and window.panels["viewport"].view.splats is not None, timeout=20_000)
    view = window.panels["viewport"].view
    assert window.docks["viewport"].isVisible() and view.isVisible()
    assert "scene.ply: 3,000 splats" in window.panels["viewport"].file_label.text()

    first = frame(view)
    background = np.array([round(c * 255) for c in (0.09, 0.09, 0.11)])
    drawn = np.abs(first.astype(int) - background).sum(-1) > 24
    assert 0.05 < drawn.mean() < 0.95, f"{drawn.mean():.3f} of the view is drawn"

    # Orbit: drag left to right across the view.
    centre = QPoint(view.width() // 2, view.height() // 2)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=centre)
    for dx in range(10, 110, 10):
        qtbot.mouseMove(view, centre + QPoint(dx, dx // 4))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=centre + QPoint(100, 25))
    assert view.orbit.yaw != view.source.yaw and view.orbit.pitch != view.source.pitch
    orbited = frame(view)
    assert np.abs(orbited.astype(int) - first.astype(int)).mean() > 2
    window.grab().save(str(artifacts_dir / "studio_viewport_orbit.png"))

    # Keep drawing for a moment: the frames/s readout appears.
    for _ in range(12):
        view.update()
        qtbot.wait(60)
    assert view.fps() > 0 and "fps" in window.panels["viewport"].fps_label.text()

    # Zoom in with the wheel, then Reset View returns to the source camera and its picture.
    distance = view.orbit.distance
    wheel = QWheelEvent(QPointF(centre), QPointF(view.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, wheel)
    assert view.orbit.distance == pytest.approx(distance * 0.81)
    view.reset_view()
    assert view.orbit == view.source
    assert np.abs(frame(view).astype(int) - first.astype(int)).mean() < 0.5


def test_open_bad_ply_names_the_file(window, qtbot, tmp_path):
    bad = tmp_path / "broken.ply"
    bad.write_text("ply\nformat ascii 1.0\nend_header\n")
    assert window.open_path(bad)
    qtbot.waitUntil(lambda: window.job is None, timeout=10_000)
    assert "broken.ply" in window.last_error
    assert window.panels["viewport"].view.splats is None
