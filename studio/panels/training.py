"""Training panel: train the project's avatar from a preset, with live loss and PSNR curves, the latest preview
(render beside the real crop), step, stage, Gaussians and ETA, Pause/Continue and Cancel. The panel asks; the
main window runs the job (``TrainAvatarJob``) and hands the panel its worker.

Cancel returns the panel to idle at once: the job stops after its current step and keeps a checkpoint that the
next run resumes from (the main window starts that run once the checkpoint is written)."""

from __future__ import annotations

import json
import time

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy,
                               QVBoxLayout, QWidget)

from core.avatar.archive import RestoreAvatarJob, archived
from core.avatar.config import DEFAULT_PRESET, PRESETS, TrainConfig, describe, preset
from core.avatar.train import TrainAvatarJob, TrainResult
from core.layout import AVATAR_FILE, CHECKPOINT_FILE, EVAL_FILE
from studio.plots import MetricCurves, training_graphics
from studio.state import StudioState
from studio.workers import JobWorker

LOSS_COLOR, PSNR_COLOR = (235, 235, 240), (90, 170, 240)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA —"
    s = int(round(seconds))
    return f"ETA {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"ETA {s // 60}:{s % 60:02d}"


class Eta:
    """Time left: the wall time since the run's first report over the fraction done since then, times the
    fraction left; paused time does not count. None until ``min_seconds`` have passed with some progress."""

    def __init__(self, min_seconds: float = 3.0):
        self.min_seconds = min_seconds
        self.start: tuple[float, float] | None = None   # (time, fraction) of the first report
        self.paused_at: float | None = None

    def update(self, fraction: float, now: float) -> float | None:
        if self.start is None:
            self.start = (now, fraction)
            return None
        t0, f0 = self.start
        if now - t0 < self.min_seconds or fraction <= f0:
            return None
        return (now - t0) / (fraction - f0) * max(1.0 - fraction, 0.0)

    def pause(self, now: float) -> None:
        self.paused_at = now

    def resume(self, now: float) -> None:
        if self.paused_at is not None and self.start is not None:
            self.start = (self.start[0] + now - self.paused_at, self.start[1])
        self.paused_at = None


class PreviewLabel(QLabel):
    """The latest preview image, scaled to the label with its aspect kept (never sizing the layout)."""

    def __init__(self, empty: str = "The preview appears as training runs: the render beside the real face"):
        super().__init__()
        self.empty = empty
        self.image: QImage | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 80)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setStyleSheet("background: rgb(24, 24, 28); color: rgb(140, 140, 150);")
        self.clear_image()

    def set_image(self, rgb: np.ndarray) -> None:
        """Show uint8 [H,W,3] RGB."""
        rgb = np.ascontiguousarray(rgb)
        h, w, _ = rgb.shape
        self.image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # owns its pixels
        self._rescale()

    def clear_image(self) -> None:
        self.image = None
        self.setText(self.empty)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self.image is not None:
            self.setPixmap(QPixmap.fromImage(self.image).scaled(
                self.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))


class TrainingPanel(QWidget):
    show_requested = Signal()  # bring this panel's dock to the front

    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.preset_box = QComboBox()
        cuda = torch.cuda.is_available()
        for name, config in PRESETS.items():
            self.preset_box.addItem(f"{name} ({describe(name)})", name)
            if config.backend == "cuda" and not cuda:
                i = self.preset_box.count() - 1
                self.preset_box.model().item(i).setEnabled(False)
                self.preset_box.setItemData(i, "Needs an NVIDIA GPU with CUDA, which this machine lacks",
                                            Qt.ItemDataRole.ToolTipRole)
        self.set_preset(DEFAULT_PRESET)
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(lambda: self.run())
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Hold training between steps; nothing is lost")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop; the checkpoint is kept and training again resumes from it")
        self.cancel_button.clicked.connect(self.cancel)
        self.hint = QLabel("Track the face and make its audio features (Audio panel) first.")
        self.hint.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel()
        self.status.setObjectName("timecode")
        self.preview = PreviewLabel()
        self.preview.setToolTip("The avatar's render of the last held-out frame (left) beside the real face (right)")
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        self.graphics, self.loss_plot, self.psnr_plot = training_graphics("loss", "PSNR (dB)")
        self.curves = MetricCurves()
        self.curves.add("loss", self.loss_plot.plot(pen=pg.mkPen(LOSS_COLOR, width=1.5), name="L1 + D-SSIM"))
        self.curves.add("psnr", self.psnr_plot.plot(pen=pg.mkPen(PSNR_COLOR, width=1.5), name="face PSNR"))

        form = QFormLayout()
        form.addRow("Preset:", self.preset_box)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.pause_button, self.cancel_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.hint)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.preview, 2)
        layout.addWidget(self.graphics, 3)
        layout.addWidget(self.summary)
        self.kept_box = QComboBox()
        self.kept_box.setToolTip("Avatars kept when a run with another preset (or on newer tracking or features) "
                                 "replaced them")
        self.restore_button = QPushButton("Restore")
        self.restore_button.setToolTip("Make the chosen kept avatar the project's again; the current one is kept")
        self.restore_button.clicked.connect(self.restore)
        kept = QHBoxLayout()
        kept.addWidget(QLabel("Kept avatars:"))
        kept.addWidget(self.kept_box, 1)
        kept.addWidget(self.restore_button)
        layout.addLayout(kept)

        self.worker: JobWorker | None = None   # the run this panel shows
        self.running = False                   # a run is under way (not cancelled)
        self.waiting = False                   # a run waits for a cancelled one to write its checkpoint
        self.metrics: dict | None = None       # the latest curve point
        self.message = ""                      # the job's latest progress message
        self.eta = Eta()
        self.eta_seconds: float | None = None
        self.images = 0                        # previews received this run
        self.started = time.monotonic()
        state.project_changed.connect(self.clear)
        state.tracking_changed.connect(self.refresh)
        state.stages_changed.connect(self.refresh)
        self.clear()

    def config(self) -> TrainConfig:
        return preset(self.preset_box.currentData())

    def set_preset(self, name: str) -> None:
        self.preset_box.setCurrentIndex(self.preset_box.findData(name))

    @property
    def paused(self) -> bool:
        return self.state.jobs.paused

    # --- a run -----------------------------------------------------------------------------------------
    def run(self, config: TrainConfig | None = None) -> JobWorker | None:
        """Train the project's avatar (``config`` defaults to the chosen preset); curves and preview live here.
        Asked while a cancelled run still writes its checkpoint, it starts once that is written, so it resumes
        from it."""
        pr, jobs = self.state.project, self.state.jobs
        if pr is None or self.state.tracking is None or "audio" not in pr.stages:
            self.state.notice.emit("Track the face and make its audio features first: the avatar learns from both.")
            return None
        if jobs.worker is not None and jobs.worker.token.cancelled and isinstance(jobs.worker.job, TrainAvatarJob):
            self.set_waiting()
            jobs.worker.done.connect(lambda: self.waiting and self.window().isVisible() and self.run(config),
                                     Qt.ConnectionType.QueuedConnection)
            return None
        worker = jobs.run(TrainAvatarJob(pr, config or self.config()), on_finished=self.on_finished,
                          on_errored=lambda _e: self.on_failed("Training failed."), on_cancelled=self.on_cancelled,
                          on_progress=self.on_progress, on_metrics=self.on_metrics, on_image=self.on_image)
        if worker is None:
            if self.waiting:
                self.on_failed("Training did not start.")
            return None
        self.attach(worker)
        self.show_requested.emit()
        return worker

    def attach(self, worker: JobWorker) -> None:
        """Show the run of ``worker`` (a TrainAvatarJob's)."""
        self.worker, self.running, self.waiting = worker, True, False
        self.clear()
        self.started = time.monotonic()
        self.message = "Starting…"
        self._show_status()
        self.refresh()

    def set_waiting(self) -> None:
        """A run was asked for while the cancelled one still writes its checkpoint: it starts when that is done."""
        self.waiting = True
        self.status.setText("Waiting for the cancelled run to save its checkpoint…")
        self.refresh()

    def toggle_pause(self) -> None:
        """Pause or continue the run: the job holds between steps while its pause event is set."""
        if self.worker is None or not self.running:
            return
        now = time.monotonic()
        self.eta.resume(now) if self.paused else self.eta.pause(now)
        self.state.jobs.set_paused(not self.paused)
        self._show_status()
        self.refresh()

    def cancel(self) -> None:
        """Stop the run: the panel is idle at once, the job ends after its current step and keeps a checkpoint."""
        if not self.running:
            return
        self.state.jobs.cancel()
        self.running = False
        self._show_status("cancelling…")
        self.refresh()

    # --- slots for the running job -----------------------------------------------------------------
    def on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.message = message or self.message
        if self.running and not self.paused:
            self.eta_seconds = self.eta.update(fraction, time.monotonic())
            self._show_status()

    def on_metrics(self, metrics: dict) -> None:
        """One curve point: loss and PSNR get a point; the status line its step, stage and Gaussians."""
        self.curves.append(metrics)
        self.metrics = metrics
        if self.running:
            self._show_status()

    def on_image(self, rgb: np.ndarray) -> None:
        self.images += 1
        self.preview.set_image(rgb)

    def on_finished(self, result: TrainResult) -> None:
        self.running = False
        self._show_status("done")
        psnr = self.curves.points["psnr"][1]
        last = f", face PSNR {psnr[-1]:.1f} dB" if psnr else ""
        self.summary.setText(f"Avatar: {result.steps:,} steps, {result.gaussians:,} Gaussians{last}. "
                             f"Took {time.monotonic() - self.started:.0f} s.")
        self._show_kept()
        self.refresh()
        self.state.avatar_made()

    def on_cancelled(self) -> None:
        """The cancelled run has ended and written its checkpoint."""
        if self.waiting or self.running:
            return  # a newer run is already asked for
        step = int(self.metrics["step"]) if self.metrics else None
        self.summary.setText(f"Cancelled at step {step}: training again with this preset resumes there."
                             if step else "Cancelled.")
        self._show_status("cancelled")
        self.refresh()

    def on_failed(self, message: str) -> None:
        self.running = self.waiting = False
        self._show_status("failed")
        self.summary.setText(message)
        self.refresh()

    def clear(self) -> None:
        """Forget the last run's curves, preview and numbers."""
        self.curves.clear()
        self.preview.clear_image()
        self.progress.setValue(0)
        self.metrics, self.message, self.eta, self.eta_seconds, self.images = None, "", Eta(), None, 0
        self.status.clear()
        self.summary.clear()
        self.show_saved()
        self.refresh()

    def restore(self) -> JobWorker | None:
        """Bring back the chosen kept avatar (a job: it moves files); the Viewport shows it."""
        name = self.kept_box.currentData()
        if name is None or self.state.project is None:
            return None

        def done(_replaced) -> None:
            self.clear()
            self.state.avatar_made()

        return self.state.jobs.run(RestoreAvatarJob(self.state.project, name), on_finished=done)

    def _show_kept(self) -> None:
        pr = self.state.project
        kept = [a for a in archived(pr) if a.trained] if pr is not None else []
        self.kept_box.clear()
        for a in reversed(kept):  # newest first
            self.kept_box.addItem(f"{a.preset}, {a.steps:,} steps ({a.created[:16].replace('T', ' ')})", a.name)
        if not kept:
            self.kept_box.addItem("none", None)

    def show_saved(self) -> None:
        """What the project already holds: its trained avatar (preset, steps, when, the held-out figures of its last
        evaluation) and whether it is still current, so a reopened project shows its avatar without training."""
        self._show_kept()
        pr = self.state.project
        record = pr.stages.get("avatar") if pr is not None else None
        if record is None or not pr.path(AVATAR_FILE).is_file():
            return
        cfg = record.config
        text = (f"Trained avatar: {cfg.get('preset', '?')} preset, "
                f"{int(cfg.get('stage1_steps', 0)) + int(cfg.get('stage2_steps', 0)):,} steps ({record.created}).")
        report = pr.path(EVAL_FILE)
        if report.is_file():
            try:
                e = json.loads(report.read_text())
                text += (f" Held-out: face PSNR {e['face_psnr']:.1f} dB, mouth r {e['mouth_r']:.2f}, "
                         f"LMD {e['lmd_centred']:.2f} px.")
            except (OSError, ValueError, KeyError, TypeError):
                text += " Its evaluation report cannot be read: evaluate again."
        current = self.state.stage("avatar")
        text += " Current." if current.current else f" Stale: {current.reason}."
        self.summary.setText(text)

    # --- view ------------------------------------------------------------------------------------------
    def _show_status(self, tail: str | None = None) -> None:
        """Step/total, stage and Gaussians of the latest curve point (the job's message before the first), then
        ``tail`` or, while running, "paused" or the ETA."""
        m = self.metrics
        if m:
            parts = [f"Step {int(m['step']):,}/{self.worker.job.config.steps:,}", f"stage {int(m['stage'])}/2",
                     f"{int(m['gaussians']):,} Gaussians"]
        else:
            parts = [self.message] if self.message else []
        parts.append(tail or ("paused" if self.paused else format_eta(self.eta_seconds)))
        self.status.setText(" · ".join(parts))

    def _resumable(self) -> bool:
        """Whether the project holds an unfinished run's checkpoint (newer than the avatar, if any)."""
        pr = self.state.project
        if pr is None or not pr.path(CHECKPOINT_FILE).is_file():
            return False
        avatar = pr.path(AVATAR_FILE)
        return not avatar.is_file() or pr.path(CHECKPOINT_FILE).stat().st_mtime > avatar.stat().st_mtime

    def refresh(self) -> None:
        """Enable what can be done now; called on changes of the project, its tracking and audio, and the run."""
        pr = self.state.project
        ready = pr is not None and self.state.tracking is not None and "audio" in pr.stages
        self.hint.setVisible(pr is not None and not ready)
        busy = self.running or self.waiting
        self.preset_box.setEnabled(not busy)
        self.train_button.setEnabled(ready and not busy)
        resumable = not busy and self._resumable()
        self.train_button.setText("Resume" if resumable else "Train")
        self.train_button.setToolTip("Continue the unfinished run from its checkpoint (with another preset, start "
                                     "over)" if resumable else "Train the avatar with this preset")
        self.pause_button.setEnabled(self.running)
        self.pause_button.setText("Continue" if self.running and self.paused else "Pause")
        self.cancel_button.setEnabled(self.running)
        self.restore_button.setEnabled(not busy and self.kept_box.currentData() is not None)
        self.progress.setVisible(busy)
