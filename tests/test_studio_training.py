"""Avatar training in the studio: presets, live loss/PSNR curves and previews from the Training panel, Pause and
Continue, a Cancel that frees the panel within a second and a Resume that continues from the checkpoint, and the
trained avatar speaking in the Viewport."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from core.avatar.config import PRESETS
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AVATAR_FILE, CHECKPOINT_FILE
from studio.panels.training import Eta, TrainingPanel, format_eta
from studio.panels.viewport import AVATAR, FILE, NO_FILE
from studio.state import StudioState
from studio.workers import JobWorker, start_job

pytestmark = pytest.mark.gui
TINY = PRESETS["tiny"]


@pytest.fixture
def window(window, qtbot, voiced_project, copy_project):
    """The studio with a fresh copy of a tracked, voiced project open, the tiny preset chosen."""
    assert window.open_project(copy_project(voiced_project("may_13s.mp4"), "may"))
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    window.panels["training"].set_preset("tiny")
    window.docks["training"].raise_()
    return window


def drawn_fraction(view) -> float:
    """The share of the GL view's pixels that differ from its background."""
    img = view.grabFramebuffer().convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    rgb = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3)
    background = np.array([round(c * 255) for c in (0.09, 0.09, 0.11)])
    return float((np.abs(rgb.astype(int) - background).sum(-1) > 24).mean())


@dataclass
class PreviewJob:
    """Reports ten steps, a preview image on every other one."""

    name: str = "previews"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> None:
        for i in range(10):
            image = np.full((4, 8, 3), i, np.uint8) if i % 2 else None
            progress(Progress(i / 10, f"step {i}", None, image))


def test_worker_delivers_every_preview_image(qtbot):
    """Images are never throttled away with the progress bar's updates: each one reaches the UI thread."""
    images: list[np.ndarray] = []
    worker = start_job(PreviewJob(), on_image=images.append)
    # The job may end before a waitSignal could connect: wait on what it leaves behind instead.
    qtbot.waitUntil(lambda: worker not in JobWorker._live and len(images) == 5, timeout=5_000)
    assert [int(im[0, 0, 0]) for im in images] == [1, 3, 5, 7, 9]


@pytest.mark.parametrize("cuda", [False, True])
def test_presets_and_the_idle_panel(qtbot, monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    panel = TrainingPanel(StudioState())
    qtbot.addWidget(panel)
    panel.show()
    assert [panel.preset_box.itemData(i) for i in range(panel.preset_box.count())] == list(PRESETS)
    assert panel.preset_box.currentData() == "cpu-draft" and panel.config() == PRESETS["cpu-draft"]
    gpu = panel.preset_box.findData("gpu-quality")
    assert panel.preset_box.model().item(gpu).isEnabled() is cuda
    tooltip = panel.preset_box.itemData(gpu, Qt.ItemDataRole.ToolTipRole)
    assert (tooltip is None) if cuda else ("CUDA" in tooltip)
    panel.set_preset("tiny")
    assert panel.config() == TINY
    # No project: nothing to train, nothing to pause or cancel.
    assert not panel.train_button.isEnabled() and not panel.pause_button.isEnabled()
    assert not panel.cancel_button.isEnabled() and panel.train_button.text() == "Train"


def test_eta_waits_for_data_and_leaves_pauses_out():
    eta = Eta(min_seconds=3.0)
    assert eta.update(0.1, 100.0) is None                      # the first report: no rate yet
    assert eta.update(0.2, 101.0) is None                      # too soon to trust
    assert eta.update(0.4, 106.0) == pytest.approx(12.0)       # 0.3 in 6 s: 0.6 left takes 12 s
    eta.pause(106.0)
    eta.resume(116.0)                                          # ten paused seconds do not count
    assert eta.update(0.5, 108.0 + 10.0) == pytest.approx(8 / 0.4 * 0.5)
    assert format_eta(None) == "ETA —" and format_eta(42.4) == "ETA 0:42" and format_eta(3725) == "ETA 1:02:05"


@pytest.mark.slow
def test_train_tiny_from_the_panel_then_the_avatar_speaks_in_the_viewport(window, qtbot, artifacts_dir):
    panel, viewport = window.panels["training"], window.panels["viewport"]
    assert panel.train_button.isEnabled() and panel.train_button.text() == "Train"
    assert not viewport.has_avatar()
    trained: list[bool] = []
    window.state.avatar_changed.connect(lambda: trained.append(True))
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    worker = window.job
    assert worker is not None and panel.running and not panel.train_button.isEnabled()
    assert panel.pause_button.isEnabled() and panel.cancel_button.isEnabled() and not panel.preset_box.isEnabled()
    metrics: list[dict] = []
    statuses: list[str] = []
    worker.metrics.connect(metrics.append)
    worker.progress.connect(lambda *_: statuses.append(panel.status.text()))  # after the panel's own slot

    # Pause: the job holds after its current step; Continue: it goes on.
    qtbot.waitUntil(lambda: len(metrics) >= 3, timeout=120_000)
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert worker.job.pause.is_set() and panel.pause_button.text() == "Continue"
    assert panel.status.text().endswith("paused")
    qtbot.wait(3_000)                                          # the step under way ends
    held = len(metrics)
    qtbot.wait(3_000)
    assert len(metrics) == held and window.job is worker
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert not worker.job.pause.is_set() and panel.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: len(metrics) > held, timeout=30_000)

    qtbot.waitUntil(lambda: window.job is None, timeout=300_000)
    assert window.last_error is None and trained == [True]
    steps = list(range(1, TINY.steps + 1))
    assert [int(m["step"]) for m in metrics] == steps         # every step's point reached the UI
    for key in ("loss", "psnr"):
        x, y = panel.curves[key].getData()
        assert list(x) == steps and np.isfinite(y).all()
    assert panel.curves["psnr"].getData()[1][-1] > 10         # dB over the face: a face, not noise
    assert panel.images == TINY.steps // TINY.preview_every   # a preview every preview_every steps
    assert panel.preview.image.size().toTuple() == (2 * TINY.crop_size, TINY.crop_size)
    assert not panel.preview.pixmap().isNull()
    assert any("ETA" in s for s in statuses)          # its arithmetic: test_eta; a tiny run may end before 3 s
    gaussians = int(metrics[-1]["gaussians"])
    assert panel.status.text() == f"Step {TINY.steps}/{TINY.steps} · stage 2/2 · {gaussians:,} Gaussians · done"
    assert panel.summary.text().startswith(f"Avatar: {TINY.steps} steps, {gaussians:,} Gaussians, face PSNR ")
    assert panel.train_button.isEnabled() and panel.train_button.text() == "Train"
    assert not panel.pause_button.isEnabled() and not panel.cancel_button.isEnabled()

    # The main window shows the avatar in the Viewport and plays the footage: the avatar follows the playhead.
    assert viewport.has_avatar() and viewport.mode() == AVATAR and window.docks["viewport"].isVisible()
    assert window.state.playing
    window.docks["training"].raise_()
    qtbot.wait(100)
    window.grab().save(str(artifacts_dir / "studio_training.png"))
    window.docks["viewport"].raise_()
    viewport.view.playback.budget_s = 1e-5        # as on a machine too slow for any more: the lowest resolution
    shown: set[int] = set()
    scales: set[float] = set()
    for _ in range(40):
        qtbot.wait(50)
        if viewport.avatar_frame is not None:
            shown.add(viewport.avatar_frame)
            scales.add(viewport.view.drawn_scale)
    assert len(shown) >= 2, f"the avatar showed frames {shown} during playback"
    assert viewport.view.playback.lowest in scales, f"drawn at {scales} while playing"
    window.grab().save(str(artifacts_dir / "studio_avatar_viewport_playing.png"))
    window.playback.stop()
    window.state.set_frame(120)
    qtbot.waitUntil(lambda: viewport.avatar_frame == 120, timeout=10_000)
    qtbot.waitUntil(lambda: viewport.view.drawn_scale == 1.0, timeout=2_000)   # still again: full resolution
    shown_gaussians = len(viewport.avatar_source._driver.baked.kept)   # baked: those that cover a fifth of a pixel
    assert 0.5 * gaussians < shown_gaussians <= gaussians and len(viewport.view.splats) == shown_gaussians
    assert f"frame 120, {shown_gaussians:,} Gaussians" in viewport.file_label.text()
    qtbot.wait(100)
    assert 0.02 < drawn_fraction(viewport.view) < 0.9
    window.grab().save(str(artifacts_dir / "studio_avatar_viewport.png"))

    # The Splats file mode shows no avatar; the project, opened again, offers and shows its avatar.
    viewport.mode_box.setCurrentIndex(viewport.mode_box.findData(FILE))
    assert viewport.view.splats is None and viewport.file_label.text() == NO_FILE
    root = window.state.project.root
    assert (root / AVATAR_FILE).is_file()
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.footage is not None, timeout=20_000)
    assert viewport.has_avatar() and viewport.mode() == AVATAR
    qtbot.waitUntil(lambda: viewport.avatar_frame == window.state.frame, timeout=10_000)


@pytest.mark.slow
def test_cancel_frees_the_panel_within_a_second_and_resume_continues(window, qtbot):
    panel = window.panels["training"]
    root = window.state.project.root
    first: list[dict] = []
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    worker = window.job
    worker.metrics.connect(first.append)
    ended: list[float] = []
    worker.done.connect(lambda: ended.append(time.monotonic()))
    qtbot.waitUntil(lambda: len(first) >= 3, timeout=120_000)

    clicked = time.monotonic()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.train_button.isEnabled(), timeout=1_000)
    idle = time.monotonic() - clicked
    assert idle < 1.0, f"the panel took {idle:.2f} s to return"
    assert not panel.running and not panel.cancel_button.isEnabled() and not panel.pause_button.isEnabled()
    assert panel.preset_box.isEnabled()

    # Train again at once: the run waits for the cancelled one to write its checkpoint, then resumes from it.
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert panel.waiting and not panel.train_button.isEnabled()
    qtbot.waitUntil(lambda: window.job is not None and window.job is not worker, timeout=30_000)
    print(f"panel idle {idle:.2f} s after Cancel; the job ended {ended[0] - clicked:.2f} s after it")
    assert (root / CHECKPOINT_FILE).is_file() and not (root / AVATAR_FILE).exists()
    assert panel.running and not panel.waiting and panel.cancel_button.isEnabled()
    second: list[dict] = []
    window.job.metrics.connect(second.append)
    qtbot.waitUntil(lambda: len(second) >= 1, timeout=120_000)
    assert int(second[0]["step"]) == int(first[-1]["step"]) + 1  # continued where the cancelled run stopped

    clicked = time.monotonic()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - clicked < 1.0 and panel.train_button.isEnabled()
    qtbot.waitUntil(lambda: window.job is None, timeout=60_000)
    assert window.last_error is None and not (root / AVATAR_FILE).exists()
    assert panel.summary.text().startswith(f"Cancelled at step {int(second[-1]['step'])}: ")
    assert panel.status.text().endswith("cancelled") and panel.train_button.text() == "Resume"


@pytest.mark.slow
def test_a_reopened_project_shows_its_trained_avatar(window, qtbot, trained_project, copy_project, artifacts_dir,
                                                     capsys):
    """The Training panel of a project opened again says what avatar it holds, with its evaluation, and whether it
    is current, without training; a changed encoder turns that into the stale reason."""
    from core.cli import main

    root = copy_project(trained_project("may_13s.mp4"), "trained")
    assert main(["eval", "--project", str(root)]) == 0
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    text = window.panels["training"].summary.text()
    assert text.startswith("Trained avatar: tiny preset, 24 steps") and "Held-out: face PSNR" in text
    assert text.endswith("Current.") and window.panels["training"].train_button.text() == "Train"
    window.docks["training"].raise_()
    window.grab().save(str(artifacts_dir / "studio_training_reopened.png"))

    assert main(["audio", "--project", str(root), "--encoder", "mel"]) == 0
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    assert "Stale: the avatar was made from an earlier version of the audio features" in window.panels["training"].summary.text()
    capsys.readouterr()


@pytest.mark.slow
def test_a_kept_avatar_is_restored_from_the_training_panel(window, qtbot, trained_project, copy_project,
                                                           artifacts_dir, capsys):
    from core.cli import main
    from core.pipeline import status

    root = copy_project(trained_project("katie_8s.mp4"), "kept")
    first = (root / AVATAR_FILE).read_bytes()
    assert main(["train", "--project", str(root), "--preset", "tiny", "--steps", "2", "1"]) == 0  # keeps the first
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    panel = window.panels["training"]
    window.docks["training"].raise_()
    assert panel.summary.text().startswith("Trained avatar: tiny preset, 3 steps")
    assert panel.kept_box.count() == 1 and panel.kept_box.currentText().startswith("tiny, 24 steps")
    assert panel.restore_button.isEnabled()
    qtbot.mouseClick(panel.restore_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.job is None and panel.summary.text().startswith("Trained avatar: tiny preset, 24"),
                    timeout=20_000)
    assert (root / AVATAR_FILE).read_bytes() == first and status(window.state.project)["avatar"].current
    assert panel.kept_box.currentText().startswith("tiny, 3 steps")      # the one it replaced, kept in turn
    window.playback.stop()
    window.docks["training"].raise_()
    qtbot.wait(100)
    window.grab().save(str(artifacts_dir / "studio_training_kept_avatars.png"))
    capsys.readouterr()
