"""The Torso Restorer in the studio: train it from its panel with progress and previews, cancel (the panel frees at
once, the checkpoint is kept) and resume, its stage status, and a preview at the playhead once trained."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.avatar.torso import TorsoConfig
from core.layout import TORSO_CHECKPOINT_FILE, TORSO_FILE

pytestmark = pytest.mark.gui
SMALL = TorsoConfig(steps=40, batch=1, width=4, checkpoint_every=5, preview_every=5, cache_frames=30)


@pytest.fixture
def window(window, qtbot, tracked_project, copy_project):
    assert window.open_project(copy_project(tracked_project("katie_8s.mp4"), "katie"))
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    window.docks["torso"].raise_()
    return window


def test_train_cancel_resume_and_preview_from_the_torso_panel(window, qtbot, artifacts_dir):
    panel = window.panels["torso"]
    project = window.state.project
    assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.stage_status.text() == "Result: not made yet." and not panel.preview_button.isEnabled()

    worker = panel.run(SMALL)
    steps = []
    worker.metrics.connect(lambda m: steps.append(int(m["step"])))
    qtbot.waitUntil(lambda: len(steps) > 0 and steps[-1] >= 12, timeout=60_000)
    assert panel.preview.image is not None and panel.cancel_button.isEnabled()
    t = time.monotonic()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.running, timeout=500)
    assert time.monotonic() - t < 0.5
    qtbot.waitUntil(lambda: window.state.jobs.worker is None, timeout=20_000)
    assert project.path(TORSO_CHECKPOINT_FILE).is_file() and not project.path(TORSO_FILE).exists()
    assert "resumes" in panel.message.text() and panel.train_button.text() == "Resume"

    messages = []
    worker = panel.run(SMALL)
    worker.progress.connect(lambda _f, m: messages.append(m))
    qtbot.waitUntil(lambda: window.state.jobs.worker is None, timeout=60_000)
    assert any(m.startswith("Resuming the torso restorer at step") for m in messages)
    assert project.path(TORSO_FILE).is_file() and panel.message.text() == "Trained."
    assert panel.stage_status.text() == "Result: current." and panel.train_button.text() == "Train"

    window.state.set_frame(150)
    assert panel.preview_button.isEnabled()
    panel.preview_button.click()
    qtbot.waitUntil(lambda: panel.shown_frame == 150, timeout=20_000)
    image = panel.preview.image
    assert image.width() == 3 * image.height()
    qtbot.wait(100)
    assert window.grab().save(str(artifacts_dir / "studio_torso_panel.png"))
    third = image.width() // 3
    rgb = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    rgb = rgb[:, : 3 * image.width()].reshape(image.height(), image.width(), 3).astype(int)
    grey = (np.abs(rgb[:, :third] - 128) <= 1).all(axis=2)             # the band taken out
    assert 0.02 < grey.mean() < 0.4
    rebuilt, real = rgb[:, third:2 * third], rgb[:, 2 * third:]
    assert np.abs(rebuilt - real)[~grey].mean() < 1.0 and np.abs(rebuilt - real)[grey].mean() > 1.0
