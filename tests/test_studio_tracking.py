"""Tracking in the studio: pose curves (raw vs stabilized), click-to-seek, landmark and mesh overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from core.ingest import IngestJob
from core.jobs import run_job
from core.project import Project
from core.tracking.track import TrackJob
from studio.panels.pose_curves import POSE_CURVES

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(scope="module")
def tracked_project(media_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked") / "may"
    project = Project.create(root)
    run_job(IngestJob(project, media_dir / "may_13s.mp4"))
    run_job(TrackJob(project))
    return root


@pytest.fixture
def window(window, qtbot, tracked_project):
    """The studio with the tracked project open."""
    assert window.open_project(tracked_project)
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    return window


def test_pose_curves_six_curves_one_point_per_frame(window):
    panel = window.panels["pose"]
    assert set(panel.curves) == set(POSE_CURVES)
    for name in POSE_CURVES:
        raw, stable = panel.curves[name]
        for item in (raw, stable):
            x, y = item.getData()
            assert len(x) == len(y) == 331 and np.isfinite(y).all()
    assert set(panel.blend_curves) == {"eyeBlinkLeft", "eyeBlinkRight", "jawOpen"}
    panel.set_blendshape_visible("jawOpen", False)
    panel.set_blendshape_visible("mouthSmileLeft", True)
    assert set(panel.blend_curves) == {"eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft"}
    assert "Face on" in window.panels["tracking"].summary.text()


@pytest.mark.parametrize("plot_name", ["yaw", "tz"])
def test_clicking_a_curve_seeks_the_timeline(window, qtbot, plot_name):
    panel = window.panels["pose"]
    window.docks["pose"].raise_()
    qtbot.wait(50)
    plot = panel.plots[plot_name]
    k = 123
    scene = plot.vb.mapViewToScene(QPointF(k, float(np.mean(plot.vb.viewRange()[1]))))
    pos = panel.graphics.mapFromScene(scene)
    qtbot.mouseClick(panel.graphics.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: abs(window.state.frame - k) <= 1)
    assert window.panels["timeline"].frame_box.value() == window.state.frame
    assert all(c.value() == window.state.frame for c in panel.cursors)


def test_overlay_screenshot(window, qtbot, artifacts_dir):
    window.panels["tracking"].landmarks_box.setChecked(True)
    window.panels["tracking"].mesh_box.setChecked(True)
    assert window.state.overlays == {"landmarks": True, "mesh": True}
    window.state.set_frame(100)
    qtbot.waitUntil(lambda: window.viewer.shown_index == 100, timeout=10_000)
    qtbot.wait(100)
    path = artifacts_dir / "studio_tracking_overlay.png"
    assert window.grab().save(str(path))
    viewer_path = artifacts_dir / "viewer_landmark_overlay.png"
    assert window.viewer.grab().save(str(viewer_path))
    # The overlay really drew: green landmark pixels appear on the viewer where the frame had none.
    img = window.viewer.grab().toImage()
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine() // 4, 4)[:, :w, :3]
    green = (arr[..., 1] > 220) & (arr[..., 0] < 160) & (arr[..., 2] < 160)  # BGRA: G high, R/B low
    assert green.sum() > 300


def test_following_another_face_that_is_not_there_is_a_clear_error(window, qtbot, tracked_project):
    """The Follow choice reaches the tracker; on a one-person clip, 'face 2' fails cleanly, nothing lost."""
    before = (tracked_project / "project.json").read_bytes()
    tracking_before = window.state.tracking
    panel = window.panels["tracking"]
    panel.face_box.setCurrentIndex(panel.face_box.findData(1))
    assert panel.face() == 1
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert window.job is not None and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: window.job is None, timeout=60_000)
    assert "face 1 was asked for" in window.last_error and "may_13s.mp4" in window.last_error
    assert window.state.tracking is tracking_before
    assert (tracked_project / "project.json").read_bytes() == before
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_a_bug_in_a_job_says_where_its_details_are_not_a_traceback(window, qtbot, tracked_project, monkeypatch):
    from core.layout import LOG_FILE
    from core.tracking import track

    def broken(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(track, "fit_pose", broken)
    monkeypatch.setattr(track, "_cached_landmarks", lambda *_: None)
    monkeypatch.setattr(track, "detect_landmarks", broken)
    panel = window.panels["tracking"]
    panel.face_box.setCurrentIndex(panel.face_box.findData(0))  # another config: the job runs
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.job is None, timeout=60_000)
    log = tracked_project / LOG_FILE
    assert window.last_error == (f"Something went wrong in Track face (ZeroDivisionError: a bug). The details are in "
                                 f"{log}.")
    assert "ZeroDivisionError: a bug" in log.read_text() and "Traceback" in log.read_text()
    assert panel.run_button.isEnabled() and window.state.tracking is not None


def test_cancel_tracking_from_the_panel_leaves_the_project_as_it_was(window, qtbot, media_dir, tmp_path):
    assert window.new_project(tmp_path / "katie")
    window.import_footage(media_dir / "katie_8s.mp4")
    qtbot.waitUntil(lambda: window.job is None and window.state.footage is not None, timeout=30_000)
    before = {p.name: p.read_bytes() for p in (tmp_path / "katie").iterdir()}
    panel = window.panels["tracking"]
    assert panel.summary.text() == "Not tracked yet."
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=30_000)  # landmarks are under way
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.job is None, timeout=30_000)
    assert "cancelled" in window.statusBar().currentMessage() and window.last_error is None
    assert window.state.tracking is None and panel.run_button.isEnabled()
    assert {p.name: p.read_bytes() for p in (tmp_path / "katie").iterdir()} == before


def test_the_timeline_shades_the_frames_without_a_face(qtbot, qapp, faceless_clip, tmp_path, artifacts_dir):
    from PySide6.QtCore import QSettings

    from studio.main_window import MainWindow

    root = tmp_path / "gap"
    project = Project.create(root)
    run_job(IngestJob(project, faceless_clip(range(60, 110))))
    run_job(TrackJob(project))
    w = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    assert w.open_project(root)
    qtbot.waitUntil(lambda: w.job is None and w.state.tracking is not None, timeout=20_000)
    timeline = w.panels["timeline"]
    assert [tuple(r.getRegion()) for r in timeline.faceless] == [(59.5, 109.5)]
    assert "No face in view: frames 60-109" in timeline.faceless[0].toolTip()
    assert "No face in view on 50 frames (shaded on the timeline)" in w.panels["tracking"].summary.text()
    w.state.set_frame(80)
    qtbot.wait(200)
    assert w.grab().save(str(artifacts_dir / "studio_timeline_no_face.png"))
    w.close()


def test_the_frame_box_gives_the_keys_back_once_a_frame_is_entered(window, qtbot):
    """Typing a frame number goes there; after Enter, Space and the arrows are the transport's again, never the
    box's (which would move its text cursor instead of the playhead)."""
    from PySide6.QtWidgets import QApplication

    box = window.panels["timeline"].frame_box
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts fire only in the active window
    qtbot.mouseClick(box.lineEdit(), Qt.MouseButton.LeftButton)
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "42")
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert window.state.frame == 42
    focus = QApplication.focusWidget()
    assert focus is None or not (focus is box or box.isAncestorOf(focus))
    qtbot.keyClick(focus or window, Qt.Key.Key_Right)
    assert window.state.frame == 43
