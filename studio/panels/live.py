"""Live panel: the avatar speaks what a microphone hears. Input picker (a device, or a sound file played in real
time), backdrop, monitor, virtual camera, a level meter, Start/Stop and Record, and a readout of frames per second,
latency, dropped frames and CPU. The frames show in the main Viewer (and the Viewport, when it is in view) through
``StudioState.live_frame``.

The avatar is loaded and baked as a job (a few seconds); the session then runs on threads of its own
(core.live.session), its frames and its end reaching the UI thread as queued signals; stopping runs off the UI thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QVBoxLayout, QWidget)

from core.errors import AvatarStudioError
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AVATAR_FILE
from core.live.input import AudioSource, DeviceSource, FileSource, LiveInputError, find_device, input_devices
from core.live.session import BACKDROPS, LiveAvatar, LiveConfig, LiveFrame, LiveSession, prepare
from core.project import Project
from studio.state import StudioState
from studio.workers import start_job

FILE_INPUT = "file"          # the input box's entry that plays a sound file as if heard live
METER_FLOOR_DB = -60.0
BACKDROP_NAMES = {"footage": "Footage (ping-pong)", "still": "Still frame", "colour": "Plain colour"}


@dataclass
class PrepareLiveJob:
    project: Project
    model: str = "live"
    name: str = "Prepare live mode"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> LiveAvatar:
        return prepare(self.project, self.model, progress, cancel)


@dataclass
class FinishTakeJob:
    """Finish a take off the UI thread (its encoder drained, its files written)."""

    session: LiveSession
    at: float                  # perf_counter time the user stopped it
    name: str = "Finish the take"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> list[Path]:
        return self.session.stop_recording(at=self.at)


@dataclass
class StopLiveJob:
    """Stop a session off the UI thread (its threads are joined, its take written)."""

    session: LiveSession
    name: str = "Stop live mode"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> list[Path]:
        files = self.session.stop_recording(wait=False)
        self.session.stop()
        progress(Progress(1.0, "Live mode stopped"))
        return files


class _Bridge(QObject):
    """The session's threads -> the UI thread."""

    frame = Signal(object)       # LiveFrame
    stopped = Signal(str)        # why, when it stopped on its own
    take = Signal(object)        # list[Path]: a take written


class LivePanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.session: LiveSession | None = None
        self.avatar: LiveAvatar | None = None       # prepared for the open project
        self.file: Path | None = None               # the sound file the File entry plays
        self.frames_seen = 0
        self.stop_seconds: float | None = None      # how long the last stop took (tests read it)
        self.recorded: list[Path] = []               # the last take's files
        self.stopping = False                        # a stop is under way
        self._bridge = _Bridge()
        self._bridge.frame.connect(self._on_frame, Qt.ConnectionType.QueuedConnection)
        self._bridge.stopped.connect(self._on_stopped, Qt.ConnectionType.QueuedConnection)
        self._bridge.take.connect(self._on_take, Qt.ConnectionType.QueuedConnection)

        self.input_box = QComboBox()
        self.input_box.setToolTip("What the avatar hears: a microphone, or a sound file played as if heard live")
        self.backdrop_box = QComboBox()
        for key in BACKDROPS:
            self.backdrop_box.addItem(BACKDROP_NAMES[key], key)
        self.backdrop_box.setToolTip("Behind the face: the footage running forward and back, its first frame, or a "
                                     "plain colour")
        self.model_box = QComboBox()
        self.model_box.addItem("Live (lower latency)", "live")
        self.model_box.addItem("The project's (as its dubs)", "project")
        self.model_box.setToolTip("The speech model: the live one answers sooner (140 ms of look-ahead instead of "
                                  "240) with less computing; the project's gives exactly a dub's mouth")
        self.monitor_box = QCheckBox("Monitor")
        self.monitor_box.setToolTip("Play the input back (use headphones)")
        self.monitor_box.toggled.connect(self._monitor_toggled)
        self.vcam_box = QCheckBox("Virtual camera")
        self.vcam_box.setToolTip("Send the frames to a webcam other applications can choose (v4l2loopback on Linux, "
                                 "OBS's camera on Windows and macOS)")
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(lambda: self.stop() if self.session is not None else self.start())
        self.record_button = QPushButton("Record…")
        self.record_button.setToolTip("Record a take: the frames with the input's sound (mp4), and the blendshapes "
                                      "that drove them (CSV beside it)")
        self.record_button.clicked.connect(lambda: self._record_dialog())
        self.meter = QProgressBar()
        self.meter.setRange(int(METER_FLOOR_DB), 0)
        self.meter.setTextVisible(False)
        self.meter.setToolTip("The input's level (dBFS)")
        self.readout = QLabel("")
        self.readout.setObjectName("timecode")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.about = QLabel("The avatar speaks what the microphone hears, over the footage, as you talk.")
        self.about.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Input:", self.input_box)
        form.addRow("Backdrop:", self.backdrop_box)
        form.addRow("Speech model:", self.model_box)
        form.addRow("Level:", self.meter)
        checks = QHBoxLayout()
        checks.addWidget(self.monitor_box)
        checks.addWidget(self.vcam_box)
        checks.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.record_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.about)
        layout.addLayout(form)
        layout.addLayout(checks)
        layout.addLayout(buttons)
        layout.addWidget(self.readout)
        layout.addWidget(self.message)
        layout.addStretch(1)

        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self._tick)
        state.project_changed.connect(self._project_changed)
        state.stages_changed.connect(self.refresh)
        self.refresh()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        """The inputs are listed when the panel shows, not at the studio's start (PortAudio takes its time), and
        again each time, so a microphone plugged in since appears; the choice made stays."""
        super().showEvent(event)
        if self.session is None:
            chosen = self.input_box.currentData()
            self.fill_inputs()
            self.input_box.setCurrentIndex(max(self.input_box.findData(chosen), 0))

    # --- inputs ------------------------------------------------------------------------------------------
    def fill_inputs(self) -> None:
        """The machine's inputs, then the sound-file entry."""
        self.input_box.clear()
        for d in input_devices():
            self.input_box.addItem(f"{d.name} ({d.rate / 1000:g} kHz)", d.index)
        self.input_box.addItem("Sound file…" if self.file is None else f"File: {self.file.name}", FILE_INPUT)
        if self.input_box.count() == 1:
            self.input_box.setToolTip("No microphone found: play a sound file as if heard live")

    def use_file(self, path: Path) -> None:
        """Play ``path`` as the input (as a microphone would hear it, in real time)."""
        self.file = Path(path)
        self.fill_inputs()
        self.input_box.setCurrentIndex(self.input_box.findData(FILE_INPUT))

    def _source(self) -> AudioSource | None:
        choice = self.input_box.currentData()
        if choice == FILE_INPUT:
            if self.file is None:
                path, _ = QFileDialog.getOpenFileName(self, "Play a sound file as the live input", str(Path.home()),
                                                      "Sound (*.wav *.flac *.mp3 *.m4a *.ogg);;All files (*)")
                if not path:
                    return None
                self.use_file(Path(path))
            return FileSource(self.file)
        return DeviceSource(find_device(choice))

    # --- session -----------------------------------------------------------------------------------------
    def start(self, source: AudioSource | None = None) -> bool:
        """Start live mode from ``source`` (default: the input chosen in the panel); the avatar is prepared first
        (a job) when the project's is not yet."""
        if self.session is not None or self.state.project is None:
            return False
        try:
            source = source or self._source()
        except (LiveInputError, AvatarStudioError) as e:
            self.message.setText(str(e))
            return False
        if source is None:
            return False
        model = self.model_box.currentData()
        if self.avatar is not None and self.avatar.project is self.state.project and self.avatar.model == model:
            self._begin(self.avatar, source)
            return True
        self.message.setText("Preparing the avatar for real time…")
        worker = self.state.jobs.run(PrepareLiveJob(self.state.project, model),
                                     on_finished=lambda avatar: self._begin(avatar, source),
                                     on_errored=lambda e: self.message.setText(f"Live mode cannot start: {e}"))
        return worker is not None

    def _begin(self, avatar: LiveAvatar, source: AudioSource) -> None:
        self.avatar = avatar
        config = LiveConfig(backdrop=self.backdrop_box.currentData(), speech_model=avatar.model)
        try:
            session = LiveSession(avatar, source, config, on_frame=self._bridge.frame.emit,
                                  on_stopped=self._bridge.stopped.emit, virtual_camera=self.vcam_box.isChecked(),
                                  on_take=self._bridge.take.emit)
            session.start()
        except (LiveInputError, AvatarStudioError) as e:
            self.message.setText(str(e))
            return
        self.session, self.frames_seen, self.stop_seconds = session, 0, None
        notes = [n for n in (session.virtual_camera_note, session.set_monitor(self.monitor_box.isChecked())) if n]
        self.message.setText("; ".join(notes) or f"Live from {source.name}.")
        self.timer.start()
        self.refresh()

    def stop(self) -> None:
        """Stop live mode (and its take), off the UI thread."""
        session = self.session
        if session is None:
            return
        begun = time.perf_counter()

        def done(_files: list[Path]) -> None:
            self.stop_seconds = time.perf_counter() - begun
            self._ended()

        start_job(StopLiveJob(session), on_finished=done,
                  on_errored=lambda e: (self.message.setText(f"The take could not be written: {e}"), self._ended()))
        self.stopping = True
        self.refresh()

    def record(self, mp4: Path, seconds: float | None = None) -> bool:
        """Start recording a take to ``mp4`` (its CSV beside it), until stopped or for ``seconds``; False, with a
        message, when it cannot."""
        if self.session is None:
            return False
        try:
            self.session.record(mp4, mp4.with_suffix(".csv"), seconds)
        except (AvatarStudioError, ValueError) as e:
            self.message.setText(str(e))
            return False
        self.message.setText(f"Recording {mp4.name}…")
        self.refresh()
        return True

    def stop_recording(self) -> None:
        """Finish the take (its files are written off the UI thread)."""
        if self.session is None:
            return

        start_job(FinishTakeJob(self.session, time.perf_counter()),
                  on_errored=lambda e: self.message.setText(f"The take could not be written: {e}"))
        self.record_button.setEnabled(False)

    def _on_take(self, files: list[Path]) -> None:
        self.recorded = files
        self.message.setText("Recorded " + ", ".join(str(p) for p in files))
        self.refresh()

    def _record_dialog(self) -> None:
        if self.session is not None and self.session.stats.recording is not None:
            self.stop_recording()
            return
        path, _ = QFileDialog.getSaveFileName(self, "Record a take", str(Path.home() / "live_take.mp4"),
                                              "MP4 video (*.mp4)")
        if path:
            self.record(Path(path).with_suffix(".mp4"))

    def _monitor_toggled(self, on: bool) -> None:
        if self.session is not None:
            note = self.session.set_monitor(on)
            if note:
                self.message.setText(note)
                self.monitor_box.setChecked(False)

    # --- from the session ----------------------------------------------------------------------------------
    def _on_frame(self, frame: LiveFrame) -> None:
        if self.session is None:
            return
        self.frames_seen += 1
        self.state.live_frame.emit(frame)

    def _on_stopped(self, message: str) -> None:
        if message and "ended" not in message:
            self.message.setText(f"Live mode stopped: {message}" + (" (the take so far is kept)"
                                                                    if self.recorded or self._recording() else ""))
        if self.session is not None and not self.stopping:
            self.stop()

    def _recording(self) -> bool:
        return self.session is not None and self.session.stats.recording is not None

    def _ended(self) -> None:
        self.session, self.stopping = None, False
        self.timer.stop()
        self.meter.setValue(int(METER_FLOOR_DB))
        self.state.live_frame.emit(None)
        self.refresh()

    def _tick(self) -> None:
        if self.session is None:
            return
        s = self.session.stats
        self.meter.setValue(int(max(METER_FLOOR_DB, min(0.0, s.level_db))))
        text = (f"{s.fps:4.1f} fps · latency {s.latency_ms:.0f} ms (95%: {s.latency_p95_ms:.0f}) · "
                f"{s.dropped} dropped · CPU {100 * s.cpu:.0f}%")
        if s.recording is not None:
            text += f" · ● REC {s.recording:.1f} s"
        self.readout.setText(text)
        self.record_button.setText("Stop Recording" if s.recording is not None else "Record…")

    def _project_changed(self) -> None:
        if self.session is not None:
            self.stop()
        self.avatar = None
        self.refresh()

    def refresh(self) -> None:
        pr = self.state.project
        avatar = self.state.stage("avatar")
        ready = pr is not None and pr.path(AVATAR_FILE).is_file() and avatar is not None and avatar.current
        running = self.session is not None
        self.start_button.setEnabled(ready and not self.stopping)
        self.start_button.setText("Stopping…" if self.stopping else "Stop" if running else "Start")
        self.record_button.setEnabled(running)
        self.input_box.setEnabled(not running)
        self.backdrop_box.setEnabled(not running)
        self.model_box.setEnabled(not running)
        self.vcam_box.setEnabled(not running)
        if pr is not None and not ready and not running:
            self.message.setText("Train the avatar first (Avatar ▸ Train Avatar): live mode drives it."
                                 if avatar is None or avatar.state == "missing" else
                                 f"The avatar is stale: {avatar.reason}")
        if not running:
            self.readout.setText("")
            self.record_button.setText("Record…")

    def shutdown(self) -> None:
        if self.session is not None:
            self.session.stop()
