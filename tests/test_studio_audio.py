"""Audio in the studio: train the audio-visual encoder from the Audio panel with live loss and held-out curves,
cancel it promptly, extract Whisper features from the menu; the panel waits for tracking."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from studio.panels.audio import AudioPanel
from studio.state import StudioState

pytestmark = pytest.mark.gui


@pytest.fixture
def window(window, qtbot, tracked_project, copy_project):
    """The studio with a fresh copy of the tracked project open (training writes a checkpoint into it)."""
    assert window.open_project(copy_project(tracked_project("may_13s.mp4"), "may"))
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    window.docks["audio"].raise_()
    return window


def test_panel_waits_for_tracking(qtbot):
    state = StudioState()
    panel = AudioPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.hint.isVisible() and "Track the face first" in panel.hint.text()
    state.set_tracking({"valid": np.ones(3, bool)})
    assert panel.run_button.isEnabled() and not panel.hint.isVisible()
    assert panel.run_button.text() == "Extract" and not panel.steps_box.isEnabled()   # the speech model, the default
    assert panel.config().encoder == "speech"
    panel.set_encoder("ave+whisper")
    assert panel.run_button.text() == "Train" and panel.steps_box.isEnabled()
    panel.set_encoder("whisper")
    assert panel.run_button.text() == "Extract" and not panel.steps_box.isEnabled()
    assert panel.config().encoder == "whisper"


@pytest.mark.slow
def test_train_from_the_panel_draws_curves_and_reports(window, qtbot, artifacts_dir):
    panel = window.panels["audio"]
    panel.set_encoder("ave+whisper")
    panel.steps_box.setValue(20)
    panel.eval_box.setValue(10)
    arrived: list[dict] = []
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert window.job is not None and panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    window.job.metrics.connect(arrived.append)
    qtbot.waitUntil(lambda: window.job is None, timeout=300_000)
    assert window.last_error is None

    assert [int(m["step"]) for m in arrived] == list(range(1, 21))  # every step's metrics reached the UI
    for key in ("loss", "sync_loss", "mouth_loss"):
        x, y = panel.curves[key].getData()
        assert len(x) == 20 and np.array_equal(x, np.arange(1, 21)) and np.isfinite(y).all()
    for key in ("sync_score", "mouth_r"):
        x, _ = panel.curves[key].getData()
        assert list(x) == [10, 20]
    text = panel.summary.text()
    assert text.startswith("AVE + Whisper features: 331 frames × 896.")
    assert "mouth r" in text and "sync score" in text and "offset" in text and "Took" in text
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()

    qtbot.wait(100)
    path = artifacts_dir / "studio_audio_training.png"
    assert window.grab().save(str(path))

    # Reopened, the project shows the trained encoder's curves and scores without training again.
    root = window.state.project.root
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.footage is not None, timeout=20_000)
    assert panel.encoder() == "ave+whisper" and not panel.running
    for key in ("loss", "sync_loss", "mouth_loss"):
        x, _ = panel.curves[key].getData()
        assert np.array_equal(x, np.arange(1, 21)), key
    assert list(panel.curves["mouth_r"].getData()[0]) == [10, 20]
    reopened = panel.summary.text()
    assert reopened.startswith("AVE + Whisper features.") and "mouth r" in reopened and "Took" not in reopened
    assert panel.stage_status.text() == "Result: current."
    qtbot.wait(100)
    assert window.grab().save(str(artifacts_dir / "studio_audio_reopened.png"))


@pytest.mark.slow
def test_cancel_training_stops_within_a_step(window, qtbot, tmp_path):
    """The job checks Cancel between training steps: it ends within one step (plus saving) of the click."""
    panel = window.panels["audio"]
    panel.set_encoder("ave+whisper")
    panel.steps_box.setValue(2000)
    steps: list[float] = []  # arrival time of each step's metrics
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    window.job.metrics.connect(lambda _m: steps.append(time.monotonic()))
    qtbot.waitUntil(lambda: len(steps) >= 4, timeout=120_000)
    clicked = time.monotonic()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.job is None, timeout=60_000)
    latency = time.monotonic() - clicked
    longest_step = float(np.diff(steps).max())
    print(f"cancel latency {latency:.2f} s; steps took up to {longest_step:.2f} s")
    assert latency < longest_step + 1.0
    assert "cancelled" in window.statusBar().currentMessage() and window.last_error is None
    # The panel hears the cancel in its own queued call, which may come just after the window's.
    qtbot.waitUntil(lambda: "resumes" in panel.message.text(), timeout=5_000)
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert (tmp_path / "may" / "ave_train.pt").is_file()  # the checkpoint a later run resumes from
    assert not (tmp_path / "may" / "audio_features.npz").exists()


@pytest.mark.slow
def test_extract_speech_features_from_the_menu(window, qtbot):
    action = next(a for a in window.actions() if a.text() == "&Extract Audio Features")
    action.trigger()
    assert window.panels["audio"].encoder() == "speech"
    qtbot.waitUntil(lambda: window.job is None, timeout=120_000)
    assert window.last_error is None
    assert window.panels["audio"].summary.text().startswith("Speech model features: 331 frames × 25. Held-out: mouth r ")
    x, _ = window.panels["audio"].curves["loss"].getData()
    assert x is None or len(x) == 0
