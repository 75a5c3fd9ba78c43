"""Audio panel: train the audio-visual encoder on this footage (or extract Whisper features), with live
loss and held-out score curves, Cancel, and the final report; the job runs on the state's job runner."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from core.audio.features import (ENCODERS, NEEDS_FILE, TRAINED, AudioConfig, AudioFeatures, AudioFeaturesJob,
                                 load_summary)
from core.audio.train_ave import AveTrainConfig
from core.errors import ProjectError
from studio.panels.stage_status import StageStatusLabel
from studio.plots import MetricCurves, training_graphics
from studio.state import StudioState
from studio.workers import JobWorker

ENCODER_NAMES = {"speech": "Speech model", "mel": "Log-mel", "ave": "AVE", "synctalk": "SyncTalk AVE", "whisper-tiny.en": "Whisper tiny.en",
                 "ave+whisper-tiny.en": "AVE + Whisper"}  # by features' id
LOSS_CURVES = {"loss": ("total", (235, 235, 240)), "sync_loss": ("sync", (90, 170, 240)),
               "mouth_loss": ("mouth", (255, 170, 60))}
SCORE_CURVES = {"sync_score": ("sync score", (90, 170, 240)), "mouth_r": ("mouth r", (255, 170, 60))}


def report_text(features: AudioFeatures, seconds: float | None = None) -> str:
    """A line for a person: what was made, its held-out scores (a trained encoder's) and how long it took (when
    known)."""
    t, d = features.features.shape
    size = f": {t} frames × {d}" if features.features.size else ""
    head = f"{ENCODER_NAMES.get(features.encoder, features.encoder)} features{size}."
    r = features.report
    parts = []
    for key, fmt in (("mouth_r", "mouth r {:.2f}"), ("sync_score", "sync score {:.3f}"),
                     ("offset_frames", "offset {:+.0f} frames")):
        if key in r and math.isfinite(r[key]):
            parts.append(fmt.format(round(r[key], 3) + 0.0))  # + 0.0: no "-0.000"
    scores = f" Held-out: {', '.join(parts)}." if parts else ""
    took = f" Took {seconds:.0f} s." if seconds is not None else ""
    return f"{head}{scores}{took}"


class AudioPanel(QWidget):
    show_requested = Signal()  # bring this panel's dock to the front

    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        defaults = AveTrainConfig()
        self.encoder_box = QComboBox()
        for key, text in ENCODERS.items():
            if key not in NEEDS_FILE:  # SyncTalk's checkpoint is not ours to ship: the CLI takes its path
                self.encoder_box.addItem(text[0].upper() + text[1:], key)
        self.encoder_box.currentIndexChanged.connect(self._encoder_changed)
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 100_000)
        self.steps_box.setSingleStep(50)
        self.steps_box.setValue(defaults.steps)
        self.eval_box = QSpinBox()
        self.eval_box.setRange(1, 10_000)
        self.eval_box.setValue(defaults.eval_every)
        self.eval_box.setToolTip("Score the encoder on the held-out frames every this many steps")
        self.run_button = QPushButton()
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop; the checkpoint is kept and training again resumes from it")
        self.cancel_button.clicked.connect(state.jobs.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.message = QLabel()
        self.hint = QLabel("Track the face first: the encoder learns from the tracked mouth.")
        self.hint.setWordWrap(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        self.graphics, self.loss_plot, self.score_plot = training_graphics("training loss", "held-out")
        self.curves = MetricCurves()
        for key, (name, color) in LOSS_CURVES.items():
            self.curves.add(key, self.loss_plot.plot(pen=pg.mkPen(color, width=1.5), name=name))
        for key, (name, color) in SCORE_CURVES.items():
            self.curves.add(key, self.score_plot.plot(pen=pg.mkPen(color, width=2), name=name, symbol="o",
                                                      symbolSize=6, symbolBrush=color, symbolPen=None))

        self.form = QFormLayout()
        self.form.addRow("Encoder:", self.encoder_box)
        self.form.addRow("Training steps:", self.steps_box)
        self.form.addRow("Evaluate every:", self.eval_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.hint)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.summary)
        self.stage_status = StageStatusLabel(state, "audio")
        layout.addWidget(self.stage_status)

        state.project_changed.connect(lambda: (self.clear(), self.show_saved()))
        state.stages_changed.connect(lambda: self.running or self.show_saved())
        state.tracking_changed.connect(self._refresh)
        self.running = False
        self.shown: str | None = None  # the stage record whose result the panel shows
        self.started = time.monotonic()
        self._encoder_changed()
        self.clear()

    def encoder(self) -> str:
        return self.encoder_box.currentData()

    def set_encoder(self, encoder: str) -> None:
        self.encoder_box.setCurrentIndex(self.encoder_box.findData(encoder))

    def config(self) -> AudioConfig:
        """What the controls ask for: the encoder and, for AVE, the training length and evaluation spacing."""
        train = replace(AveTrainConfig(), steps=self.steps_box.value(), eval_every=self.eval_box.value())
        return AudioConfig(encoder=self.encoder(), train=train)

    def run(self, config: AudioConfig | None = None) -> JobWorker | None:
        """Train the audio encoder on the footage (or extract features), curves live here; ``config`` defaults to
        the controls'."""
        if self.state.tracking is None:
            self.state.notice.emit("Track the face first: audio features are made for the tracked frames.")
            return None
        config = config or self.config()
        name = "Train audio encoder" if config.encoder in TRAINED else "Extract audio features"
        worker = self.state.jobs.run(AudioFeaturesJob(self.state.project, config, name),
                                     on_finished=self.on_finished, on_errored=lambda _e: self.on_failed(f"{name} failed."),
                                     on_cancelled=self.on_cancelled, on_progress=self.on_progress,
                                     on_metrics=self.on_metrics)
        if worker is not None:
            self.clear()
            self.set_running(True)
            self.show_requested.emit()
        return worker

    def set_running(self, running: bool) -> None:
        self.running = running
        self._refresh()
        if running:
            self.started = time.monotonic()
            self.progress.setValue(0)
            self.message.setText("Starting…")

    # --- slots for the running job -----------------------------------------------------------------
    def on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        if message:
            self.message.setText(message)

    def on_metrics(self, metrics: dict) -> None:
        """One training step's numbers: every curve that has a finite value at this step gets a point."""
        self.curves.append(metrics)

    def on_finished(self, features: AudioFeatures) -> None:
        self.set_running(False)
        self.message.setText("Done.")
        self.summary.setText(report_text(features, time.monotonic() - self.started))
        self.shown = self.state.project.stages["audio"].created

    def on_cancelled(self) -> None:
        self.set_running(False)
        steps = self.curves.points["loss"][0]
        self.message.setText(f"Cancelled at step {int(steps[-1])}: training again with the same settings resumes "
                             "there." if steps else "Cancelled.")

    def on_failed(self, message: str) -> None:
        self.set_running(False)
        self.message.setText(message)

    def clear(self) -> None:
        self.curves.clear()
        self.progress.setValue(0)
        self.message.clear()
        self.summary.clear()
        self.shown = None

    def show_saved(self) -> None:
        """What the project already holds: its features' encoder, held-out scores and, for a trained encoder, its
        curves; so a reopened project shows them without making them again."""
        pr = self.state.project
        record = pr.stages.get("audio") if pr is not None else None
        if record is None or record.created == self.shown:
            return
        try:
            saved = load_summary(pr)
        except ProjectError:
            return  # the status line says what is missing
        if self.encoder_box.findData(record.config.get("encoder")) >= 0:
            self.set_encoder(record.config["encoder"])   # the controls as the result was made
            train = record.config.get("train", {})
            for box, key in ((self.steps_box, "steps"), (self.eval_box, "eval_every")):
                if isinstance(train.get(key), int):
                    box.setValue(train[key])
        self.curves.clear()
        for point in saved.history:
            self.curves.append(point)
        self.summary.setText(report_text(saved))
        self.shown = record.created

    def trains(self) -> bool:
        """Whether the chosen encoder trains the AVE on the footage first."""
        return self.encoder() in TRAINED

    # --- view ------------------------------------------------------------------------------------------
    def _encoder_changed(self) -> None:
        self.run_button.setText("Train" if self.trains() else "Extract")
        self._refresh()

    def _refresh(self) -> None:
        tracked = self.state.tracking is not None
        self.hint.setVisible(not tracked)
        idle = tracked and not self.running
        self.encoder_box.setEnabled(idle)
        self.steps_box.setEnabled(idle and self.trains())
        self.eval_box.setEnabled(idle and self.trains())
        self.run_button.setEnabled(idle)
        self.cancel_button.setEnabled(self.running)
        self.progress.setVisible(self.running)
