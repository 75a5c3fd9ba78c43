"""The studio window under Xvfb (xcb): import, view, scrub, play, stay responsive, report bad input."""

from __future__ import annotations

import gc
import time

import av
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

import core.ingest
from core.project import Project

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def may_frames(media_dir) -> list[np.ndarray]:
    """may_13s.mp4 decoded front to back: the truth for what the viewer must show."""
    with av.open(str(media_dir / "may_13s.mp4")) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def import_clip(window, qtbot, clip, project_dir, timeout=30_000):
    assert window.new_project(project_dir)
    assert window.import_footage(clip) is not None
    qtbot.waitUntil(lambda: window.job is None, timeout=timeout)


def shown(window, qtbot, frame: int) -> np.ndarray:
    qtbot.waitUntil(lambda: window.viewer.shown_index == frame, timeout=10_000)
    return window.viewer.shown_frame


def test_window_opens_with_docks_and_menus(window):
    assert window.windowTitle() == "Avatar Studio"
    assert window.docks["project"].isVisible() and window.docks["timeline"].isVisible() and window.viewer.isVisible()
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&Edit", "&Playback", "&Tracking", "&Audio", "A&vatar", "&View"]
    assert window.panels["project"].text("Project").startswith("No project")


def test_the_studio_boxes_read_the_same_tables_as_the_cli(window):
    from core.audio.features import ENCODERS, NEEDS_FILE
    from core.avatar.config import PRESETS

    encoders = window.panels["audio"].encoder_box
    assert [encoders.itemData(i) for i in range(encoders.count())] == [k for k in ENCODERS if k not in NEEDS_FILE]
    presets = window.panels["training"].preset_box
    assert [presets.itemData(i) for i in range(presets.count())] == list(PRESETS)


def test_reset_layout_brings_every_registered_panel_back(window, qtbot, artifacts_dir):
    from studio.docks import PANELS

    window.docks["project"].setFloating(True)
    window.docks["tracking"].hide()
    window.removeDockWidget(window.docks["audio"])
    reset = next(a for a in window.menuBar().actions()[-1].menu().actions() if a.text() == "Reset &Layout")
    reset.trigger()
    qtbot.wait(100)
    for spec in PANELS:
        dock = window.docks[spec.key]
        assert not dock.isFloating() and window.dockWidgetArea(dock) == spec.area, spec.key
        assert dock.toggleViewAction().isChecked(), spec.key
        if spec.tab_with is not None:
            assert dock in window.tabifiedDockWidgets(window.docks[spec.tab_with]), spec.key
    window.grab().save(str(artifacts_dir / "studio_reset_layout.png"))


def test_a_panel_is_one_class_and_one_line_in_the_registry(qtbot, qapp, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QLabel

    import studio.main_window
    from studio.docks import PANELS, PanelSpec

    class FramePanel(QLabel):  # a panel made from the state alone, listening to it
        def __init__(self, state):
            super().__init__("frame 0")
            state.frame_changed.connect(lambda i: self.setText(f"frame {i}"))

    monkeypatch.setattr(studio.main_window, "PANELS",
                        (*PANELS, PanelSpec("frame", "Frame", FramePanel, Qt.DockWidgetArea.RightDockWidgetArea,
                                            tab_with="pose")))
    w = studio.main_window.MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    view = w.menuBar().actions()[-1].menu()
    assert "Frame" in [a.text() for a in view.actions()]
    assert w.docks["frame"] in w.tabifiedDockWidgets(w.docks["pose"])
    w.state.frame_changed.emit(7)
    assert w.panels["frame"].text() == "frame 7"
    w.close()


def test_import_shows_frame_0_and_scrub_to_200(window, qtbot, media_dir, tmp_path, may_frames, artifacts_dir):
    import_clip(window, qtbot, media_dir / "may_13s.mp4", tmp_path / "proj")
    assert window.last_error is None
    assert window.state.frame_count == 331
    assert np.array_equal(shown(window, qtbot, 0), may_frames[0])
    assert window.windowTitle().startswith("proj")
    assert window.panels["project"].text("Footage") == "may_13s.mp4"
    assert window.panels["project"].text("Status") == "OK"

    # Drag the playhead to 200.
    window.panels["timeline"].cursor.setValue(200)
    assert window.state.frame == 200
    assert np.array_equal(shown(window, qtbot, 200), may_frames[200])
    assert window.panels["timeline"].frame_box.value() == 200

    # Click on the waveform at frame 57.
    vb = window.panels["timeline"].plot.getPlotItem().vb
    pos = window.panels["timeline"].plot.mapFromScene(vb.mapViewToScene(QPointF(57, 0)))
    qtbot.mouseClick(window.panels["timeline"].plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: window.state.frame in (56, 57, 58))
    f = window.state.frame
    assert np.array_equal(shown(window, qtbot, f), may_frames[f])

    # Drag across the waveform from 100 to 150: the playhead follows; Alt+drag pans instead.
    view = window.panels["timeline"].plot

    def drag(first: float, last: float, mods=Qt.KeyboardModifier.NoModifier) -> None:
        points = [view.mapFromScene(vb.mapViewToScene(QPointF(x, 0))) for x in np.linspace(first, last, 8)]
        kinds = [QEvent.Type.MouseButtonPress] + [QEvent.Type.MouseMove] * 6 + [QEvent.Type.MouseButtonRelease]
        for kind, p in zip(kinds, points):
            held = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else Qt.MouseButton.LeftButton
            QApplication.sendEvent(view.viewport(), QMouseEvent(kind, QPointF(p), QPointF(view.mapToGlobal(p)),
                                                                Qt.MouseButton.LeftButton, held, mods))
            qtbot.wait(10)

    x_range = vb.viewRange()[0]
    drag(100, 150)
    assert 148 <= window.state.frame <= 152 and vb.viewRange()[0] == x_range
    drag(250, 200, Qt.KeyboardModifier.AltModifier)   # away from the playhead line, which drags itself
    assert 148 <= window.state.frame <= 152 and vb.viewRange()[0][0] > x_range[0] + 5   # panned, not scrubbed

    # Scrub back to 200 for the screenshot, then save it for a person to look at.
    window.state.set_frame(200)
    shown(window, qtbot, 200)
    qtbot.wait(100)
    path = artifacts_dir / "studio_footage_loaded.png"
    assert window.grab().save(str(path))
    assert path.stat().st_size > 20_000


def test_keys_play_step_and_shuttle(window, qtbot, media_dir, tmp_path):
    import_clip(window, qtbot, media_dir / "may_13s.mp4", tmp_path / "proj")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts fire only in the active window
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert window.state.frame == 2
    qtbot.keyClick(window, Qt.Key.Key_Left)
    assert window.state.frame == 1

    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.state.playing
    qtbot.waitUntil(lambda: window.state.frame >= 10, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not window.state.playing
    stopped_at = window.state.frame
    qtbot.wait(200)
    assert window.state.frame == stopped_at
    assert shown(window, qtbot, stopped_at) is not None
    assert "silently" in window.statusBar().currentMessage() or window.playback.audio.available

    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.playback.speed == 1.0
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.playback.speed == 2.0
    qtbot.keyClick(window, Qt.Key.Key_J)
    assert window.playback.speed == -1.0
    qtbot.keyClick(window, Qt.Key.Key_K)
    assert not window.state.playing and window.playback.speed == 0.0
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert window.state.frame == 330


def test_ui_keeps_running_during_import(window, qtbot, media_dir, tmp_path, monkeypatch):
    """A 20 ms timer on the UI thread keeps firing while an import grinds the CPU in its worker."""
    real_hash = core.ingest.file_sha256

    def slow_hash(path, on_chunk=None, chunk=1 << 20):
        end = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < end:  # pure-Python work that holds the GIL as a heavy step would
            n += sum(i * i for i in range(2000))
            if on_chunk:
                on_chunk(1)
        return real_hash(path, on_chunk, chunk)

    monkeypatch.setattr(core.ingest, "file_sha256", slow_hash)
    gc.collect()  # earlier tests' windows are garbage: collect them now, not inside the measured span
    window.repaint()  # the window's first full paint (GL compositing starts with the viewport) is not the import's
    qtbot.wait(50)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    assert window.new_project(tmp_path / "proj")
    worker = window.import_footage(media_dir / "may_13s.mp4")
    t0 = time.monotonic()  # the job runs from here until its last progress report reaches the UI
    reports: list[float] = []
    worker.progress.connect(lambda *_: reports.append(time.monotonic()))
    qtbot.waitUntil(lambda: window.job is None, timeout=30_000)
    timer.stop()
    t1 = reports[-1]
    assert window.state.footage is not None
    assert t1 - t0 >= 1.5
    during = [t for t in ticks if t0 <= t <= t1]
    gaps = np.diff([t0, *during, t1])
    assert len(during) >= 0.5 * (t1 - t0) / 0.020, f"{len(during)} ticks in {t1 - t0:.2f} s"
    assert gaps.max() < 0.25, f"UI thread stalled for {gaps.max() * 1000:.0f} ms (gap {gaps.argmax()} of {len(gaps)})"


def test_bad_import_names_file_and_keeps_project(window, qtbot, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    import_clip(window, qtbot, bad, tmp_path / "proj")
    assert "notes.mp4" in window.last_error and "not a media file" in window.last_error
    assert window.state.footage is None
    assert Project.open(tmp_path / "proj").footage is None


def test_cancel_import_leaves_project_as_it_was(window, qtbot, media_dir, tmp_path, monkeypatch):
    def cancelling_hash(path, on_chunk=None, chunk=1 << 20):
        window.cancel_job()
        on_chunk(1)  # the job checks its token here
        raise AssertionError("unreachable: the job should have stopped")

    monkeypatch.setattr(core.ingest, "file_sha256", cancelling_hash)
    import_clip(window, qtbot, media_dir / "may_13s.mp4", tmp_path / "proj")
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.last_error is None
    assert Project.open(tmp_path / "proj").footage is None
    assert sorted(f.name for f in (tmp_path / "proj").iterdir()) == [".lock", ".lock.json", "project.json"]  # open: held


def test_reopen_restores_frame_and_reports_moved_footage(window, qtbot, media_dir, tmp_path):
    import shutil

    clip = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "katie_8s.mp4", clip)
    import_clip(window, qtbot, clip, tmp_path / "proj")
    window.state.set_frame(120)
    window.save_project()
    assert window.recent_projects()[0] == str(tmp_path / "proj")

    assert window.open_project(tmp_path / "proj")
    qtbot.waitUntil(lambda: window.job is None, timeout=10_000)
    assert window.state.frame == 120
    shown(window, qtbot, 120)

    clip.rename(tmp_path / "moved.mp4")
    assert window.open_project(tmp_path / "proj")
    qtbot.waitUntil(lambda: window.job is None, timeout=10_000)
    assert window.state.footage is None
    assert "missing" in window.last_error
    assert window.panels["project"].relink_button.isVisible()
    assert window.state.relink_footage(tmp_path / "moved.mp4")
    qtbot.waitUntil(lambda: window.job is None, timeout=10_000)
    assert window.state.footage is not None
