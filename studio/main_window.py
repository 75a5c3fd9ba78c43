"""The main window: docks, menus, shortcuts and the status bar. Work happens in panels and jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QPushButton, QWidget)

from core.audio.features import TRAINED, AudioConfig, AudioFeatures, AudioFeaturesJob
from core.avatar.config import TrainConfig
from core.avatar.files import AVATAR_FILE
from core.avatar.train import TrainAvatarJob
from core.dub import DubJob, DubResult
from core.errors import AvatarStudioError
from core.jobs import Job
from core.project import Project
from studio.frames import FrameFetcher
from studio.panels.audio import AudioPanel
from studio.panels.export import ExportDialog
from studio.panels.pose_curves import PoseCurvesPanel
from studio.panels.project import ProjectPanel
from studio.panels.timeline import TimelinePanel
from studio.panels.tracking import TrackingPanel
from studio.panels.training import TrainingPanel
from studio.panels.viewer import ViewerPanel
from studio.panels.viewport import LoadSplatsJob, ViewportPanel
from studio.playback import Playback
from studio.state import (DubForViewJob, Footage, ImportJob, Opened, OpenFootageJob, StudioState,
                          TrackForViewJob)
from studio.workers import JobWorker, start_job

MAX_RECENT = 10
VIDEO_FILTER = "Video (*.mp4 *.mov *.mkv *.avi *.m4v *.webm);;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings()
        self.state = StudioState()
        self.playback = Playback(self.state)
        self.fetcher = FrameFetcher()
        self.job: JobWorker | None = None
        self.last_error: str | None = None  # the last message shown to the user (tests read it)

        self.viewer = ViewerPanel(self.state)
        self.timeline = TimelinePanel(self.state, self.playback)
        self.project_panel = ProjectPanel(self.state)
        self.tracking_panel = TrackingPanel(self.state)
        self.pose_curves = PoseCurvesPanel(self.state)
        self.viewport = ViewportPanel(self.state)
        self.audio_panel = AudioPanel(self.state)
        self.training_panel = TrainingPanel(self.state)
        self.setCentralWidget(self.viewer)
        self.project_dock = self._dock("Project", self.project_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tracking_dock = self._dock("Tracking", self.tracking_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.timeline_dock = self._dock("Timeline", self.timeline, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.pose_dock = self._dock("Pose Curves", self.pose_curves, Qt.DockWidgetArea.RightDockWidgetArea)
        self.viewport_dock = self._dock("Viewport", self.viewport, Qt.DockWidgetArea.RightDockWidgetArea)
        self.audio_dock = self._dock("Audio", self.audio_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.training_dock = self._dock("Training", self.training_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.pose_dock, self.viewport_dock)
        self.tabifyDockWidget(self.pose_dock, self.audio_dock)
        self.tabifyDockWidget(self.audio_dock, self.training_dock)
        self.pose_dock.raise_()

        self._build_status_bar()
        self._build_menus()

        self.fetcher.connect_ready(self.viewer.show_frame)
        self.state.frame_changed.connect(self._request_frame)
        self.state.footage_changed.connect(self._footage_changed)
        self.state.project_changed.connect(self._update_title)
        self.state.project_changed.connect(self._update_export)
        self.state.footage_changed.connect(self._update_export)
        self.playback.notice.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.project_panel.relink_requested.connect(self._relink_dialog)
        self.tracking_panel.run_requested.connect(self.track_face)
        self.tracking_panel.cancel_requested.connect(self.cancel_job)
        self.tracking_panel.overlays_changed.connect(lambda lm, mesh: self.viewer.set_overlays(lm, mesh))
        self.audio_panel.run_requested.connect(self.audio_features)
        self.audio_panel.cancel_requested.connect(self.cancel_job)
        self.training_panel.run_requested.connect(self.train_avatar)
        self.training_panel.cancel_requested.connect(self.cancel_job)
        self.training_panel.trained.connect(self._avatar_trained)

        self.resize(1280, 800)
        if geometry := self.settings.value("window/geometry"):
            self.restoreGeometry(geometry)
        if layout := self.settings.value("window/state"):
            self.restoreState(layout)
        else:  # first run: the picture gets the room, the timeline a strip below it
            self.resizeDocks([self.timeline_dock], [220], Qt.Orientation.Vertical)
            self.resizeDocks([self.project_dock, self.pose_dock], [300, 520], Qt.Orientation.Horizontal)
        self._update_title()

    # --- building ----------------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut: QKeySequence | str | None = None, menu=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work with menus hidden or docks focused
        if menu is not None:
            menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        self._action("&New Project…", self._new_project_dialog, QKeySequence.StandardKey.New, file)
        self._action("&Open…", self._open_dialog, QKeySequence.StandardKey.Open, file)
        self._action("Open &Project Folder…", self._open_project_dialog, "Ctrl+Shift+O", file)
        self.recent_menu = file.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.save_action = self._action("&Save Project", self.save_project, QKeySequence.StandardKey.Save, file)
        file.addSeparator()
        self.import_action = self._action("&Import Footage…", self._import_dialog, "Ctrl+I", file)
        file.addSeparator()
        self.export_action = self._action("&Export Dub…", self.export_dialog, "Ctrl+E", file)
        self.project_footage_action = self._action("Show Project &Footage", self.show_project_footage, None, file)
        self._update_export()
        file.addSeparator()
        self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, file)

        play = self.menuBar().addMenu("&Playback")
        self._action("Play / Pause", self.playback.toggle, "Space", play)
        self._action("Previous Frame", lambda: self.playback.step(-1), "Left", play)
        self._action("Next Frame", lambda: self.playback.step(1), "Right", play)
        play.addSeparator()
        self._action("Shuttle Backward", lambda: self.playback.shuttle(-1), "J", play)
        self._action("Stop", self.playback.stop, "K", play)
        self._action("Shuttle Forward", lambda: self.playback.shuttle(1), "L", play)
        play.addSeparator()
        self._action("First Frame", lambda: self._seek(0), "Home", play)
        self._action("Last Frame", lambda: self._seek(self.state.frame_count - 1), "End", play)

        track = self.menuBar().addMenu("&Tracking")
        self._action("&Track Face", self.track_face, "Ctrl+T", track)

        audio = self.menuBar().addMenu("&Audio")
        self._action("&Train Audio Encoder", lambda: self._audio_from_menu("ave+whisper"), None, audio)
        self._action("&Extract Audio Features", lambda: self._audio_from_menu("speech"), None, audio)

        avatar = self.menuBar().addMenu("A&vatar")
        self._action("&Train Avatar", lambda: self.train_avatar(), None, avatar)

        view = self.menuBar().addMenu("&View")
        for box, key in ((self.tracking_panel.landmarks_box, "Shift+L"), (self.tracking_panel.mesh_box, "Shift+M")):
            action = QAction(box.text(), self, checkable=True, shortcut=QKeySequence(key))
            action.toggled.connect(box.setChecked)  # the panel's box and the menu item stay in step
            box.toggled.connect(action.setChecked)
            self.addAction(action)
            view.addAction(action)
        view.addSeparator()
        self._action("Reset Viewport Camera", self.viewport.view.reset_view, None, view)
        view.addSeparator()
        for dock in (self.project_dock, self.tracking_dock, self.timeline_dock, self.pose_dock, self.viewport_dock,
                     self.audio_dock, self.training_dock):
            view.addAction(dock.toggleViewAction())

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.job_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(240)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_job)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            bar.addPermanentWidget(w)
            w.hide()

    # --- jobs ---------------------------------------------------------------------------------------
    def run_job(self, job: Job[Any], on_finished, on_errored=None, on_metrics=None) -> JobWorker | None:
        """Run one job at a time in a worker thread, with progress and Cancel in the status bar."""
        if self.job is not None:
            self.show_error(f"Wait for '{self.job.name}' to finish (or cancel it) first.")
            return None
        self.playback.stop()
        self.import_action.setEnabled(False)
        self.export_action.setEnabled(False)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.show()
        self.job_label.setText(job.name)
        self.progress_bar.setValue(0)
        on_errored = on_errored or self._job_failed

        def ended(slot):  # the job's slot is cleared first, so a result handler may start the next job
            def call(*args) -> None:
                name = self._end_job()
                slot(name, *args)
            return call

        self.job = start_job(job, on_progress=self._job_progress, on_metrics=on_metrics,
                             on_finished=ended(lambda _name, result: on_finished(result)),
                             on_errored=ended(lambda name, error: on_errored(name, error)),
                             on_cancelled=ended(self._job_cancelled))
        return self.job

    def cancel_job(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job_label.setText(f"Cancelling {self.job.name}…")

    def _job_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(fraction * 1000))
        if message:
            self.job_label.setText(message)

    def _job_failed(self, name: str, error: Exception) -> None:
        self.show_error(f"{name} failed: {error}",
                        None if isinstance(error, AvatarStudioError) else getattr(error, "traceback_text", None))

    def _job_cancelled(self, name: str) -> None:
        self.statusBar().showMessage(f"{name} cancelled; nothing was changed.", 5000)

    def _end_job(self) -> str:
        name = self.job.name if self.job else "Job"
        self.job = None
        self.import_action.setEnabled(True)
        self._update_export()
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.hide()
        return name

    def show_error(self, message: str, details: str | None = None) -> None:
        """Tell the user without blocking the event loop (the box is window-modal, not exec'd)."""
        self.last_error = message
        box = QMessageBox(QMessageBox.Icon.Warning, "Avatar Studio", message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.statusBar().showMessage(message, 10000)

    # --- project ------------------------------------------------------------------------------------
    def new_project(self, folder: str | Path) -> bool:
        return self._adopt_project(Project.create, folder) is not None

    def open_project(self, folder: str | Path) -> bool:
        project = self._adopt_project(Project.open, folder)
        if project is not None and project.footage is not None:
            self._open_footage(project.view.get("frame", 0))
        return project is not None

    def _adopt_project(self, make, folder: str | Path) -> Project | None:
        """Create or open a project (``make``), make it current and remember it; errors are shown."""
        try:
            project = make(folder)
        except AvatarStudioError as e:
            self.show_error(str(e))
            return None
        self.state.set_project(project)
        self._remember_recent(project.root)
        return project

    def save_project(self) -> None:
        pr = self.state.project
        if pr is None:
            return
        if self.state.preview is None:  # with a dub shown, the footage's playhead was kept when it was exported
            pr.view["frame"] = self.state.frame
        try:
            pr.save()
        except OSError as e:
            self.show_error(f"Could not save {pr.root}: {e}")
            return
        self.statusBar().showMessage(f"Saved {pr.root}", 4000)

    def import_footage(self, path: str | Path) -> JobWorker | None:
        """Import a clip into the open project (a New Project dialog first when none is open)."""
        if self.state.project is None and not self._new_project_dialog():
            return None
        pr = self.state.project
        self.state.set_footage(None, None)
        return self.run_job(ImportJob(pr, Path(path)), on_finished=self._footage_opened,
                            on_errored=self._import_failed)

    def track_face(self) -> JobWorker | None:
        """Track the face through the footage (landmarks, pose, stabilizer) and show the result."""
        if self.state.footage is None:
            self.show_error("Import footage before tracking.")
            return None
        self.tracking_panel.set_running(True)
        worker = self.run_job(TrackForViewJob(self.state.project, self.tracking_panel.face()),
                              on_finished=self.state.set_tracking,
                              on_errored=self._tracking_failed)
        if worker is None:
            self.tracking_panel.set_running(False)
        else:
            worker.progress.connect(self.tracking_panel.set_progress)
            worker.cancelled.connect(lambda: self.tracking_panel.set_running(False))
        return worker

    def _tracking_failed(self, name: str, error: Exception) -> None:
        self.tracking_panel.set_running(False)
        self._job_failed(name, error)

    def audio_features(self, config: AudioConfig | None = None) -> JobWorker | None:
        """Train the audio encoder on the footage (or extract Whisper features), curves live in the Audio dock;
        ``config`` defaults to the panel's."""
        if self.state.tracking is None:
            self.show_error("Track the face first: audio features are made for the tracked frames.")
            return None
        panel = self.audio_panel
        config = config or panel.config()
        name = "Train audio encoder" if config.encoder in TRAINED else "Extract audio features"
        worker = self.run_job(AudioFeaturesJob(self.state.project, config, name),
                              on_finished=self._audio_finished, on_errored=self._audio_failed,
                              on_metrics=panel.on_metrics)
        if worker is not None:
            panel.clear()
            panel.set_running(True)
            worker.progress.connect(panel.on_progress)
            worker.cancelled.connect(panel.on_cancelled)
            self.audio_dock.show()
            self.audio_dock.raise_()
        return worker

    def _audio_finished(self, features: AudioFeatures) -> None:
        self.audio_panel.on_finished(features)
        self.training_panel.refresh()  # the avatar can be trained now

    def _audio_from_menu(self, encoder: str) -> None:
        self.audio_panel.set_encoder(encoder)
        self.audio_features()

    def _audio_failed(self, name: str, error: Exception) -> None:
        self.audio_panel.on_failed(f"{name} failed.")
        self._job_failed(name, error)

    def train_avatar(self, config: TrainConfig | None = None) -> JobWorker | None:
        """Train the project's avatar (``config`` defaults to the Training panel's preset), curves and preview live
        in the Training dock. Asked while a cancelled run still writes its checkpoint, it starts once that is
        written, so it resumes from it."""
        pr, panel = self.state.project, self.training_panel
        worker = None
        if pr is None or self.state.tracking is None or "audio" not in pr.stages:
            self.show_error("Track the face and make its audio features first: the avatar learns from both.")
        elif self.job is not None and self.job.token.cancelled and isinstance(self.job.job, TrainAvatarJob):
            panel.set_waiting()
            self.job.done.connect(lambda: self.isVisible() and self.train_avatar(config),
                                  Qt.ConnectionType.QueuedConnection)
            return None
        else:
            config = config or panel.config()
            worker = self.run_job(TrainAvatarJob(pr, config), on_finished=panel.on_finished,
                                  on_errored=self._training_failed, on_metrics=panel.on_metrics)
        if worker is not None:
            panel.attach(worker)
            self.training_dock.show()
            self.training_dock.raise_()
        elif panel.waiting:
            panel.on_failed("Training did not start.")
        return worker

    def _training_failed(self, name: str, error: Exception) -> None:
        self.training_panel.on_failed(f"{name} failed.")
        self._job_failed(name, error)

    def _avatar_trained(self) -> None:
        """Show the new avatar in the Viewport and play the footage from the playhead: the avatar speaks (with a
        dub in the Viewer, the footage comes back first; it plays when asked)."""
        self.viewport.load_avatar(show=True)
        self.viewport_dock.show()
        self.viewport_dock.raise_()
        self._update_export()
        if self.state.preview is not None:
            self.show_project_footage()
        else:
            self.playback.play()

    def export_dialog(self) -> ExportDialog | None:
        """File ▸ Export Dub…: ask for the speech and the output (window-modal, never exec'd); the dub runs as a job
        when the dialog is accepted. Returns the shown dialog."""
        if not self.export_action.isEnabled():
            return None
        dialog = ExportDialog(self.state.project, Path(self._last_dir("speech")), Path(self._last_dir("dub")), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.export_dub(dialog.job()))
        dialog.open()
        return dialog

    def export_dub(self, job: DubJob) -> JobWorker | None:
        """Dub in a job (progress and Cancel in the status bar), then show the dub in the Viewer."""
        self.settings.setValue("dirs/speech", str(job.audio.parent))
        self.settings.setValue("dirs/dub", str(job.out.parent))
        return self.run_job(DubForViewJob(job), on_finished=lambda r: self._dub_finished(job, *r))

    def _dub_finished(self, job: DubJob, result: DubResult, footage: Footage) -> None:
        """Show the dub in the Viewer in the footage's place, view-only, and say what the user should know."""
        made = f"{result.frames} frames ({result.seconds:.1f} s), made at {result.fps:.1f} frames/s"
        message = "; ".join([f"Exported {result.path} — {made}", *result.notes])
        if self.state.project is not job.project:  # another project was opened meanwhile: only tell
            footage.reader.close()
        else:
            if self.state.preview is None:
                job.project.view["frame"] = self.state.frame  # where Show Project Footage returns
            self.state.show_preview(footage)
        self.statusBar().showMessage(message, 20000)

    def show_project_footage(self) -> None:
        """Back from a dub in the Viewer to the project's footage, at the frame it was left at."""
        if self.state.preview is not None:
            self._open_footage(self.state.project.view.get("frame", 0))

    def _update_export(self) -> None:
        """Export needs a trained avatar and no job running; Show Project Footage, a dub in the Viewer."""
        pr = self.state.project
        self.export_action.setEnabled(self.job is None and pr is not None and pr.path(AVATAR_FILE).is_file())
        self.project_footage_action.setEnabled(self.state.preview is not None)

    def relink_footage(self, path: str | Path) -> bool:
        pr = self.state.project
        try:
            pr.relink_footage(path)
            pr.save()
        except AvatarStudioError as e:
            self.show_error(str(e))
            return False
        self._open_footage(self.state.frame)
        return True

    def _import_failed(self, name: str, error: Exception) -> None:
        self._job_failed(name, error)
        if self.state.project is not None and self.state.project.footage is not None:
            self._open_footage(self.state.frame)  # the project kept its previous footage

    def _open_footage(self, frame: int = 0) -> None:
        self.run_job(OpenFootageJob(self.state.project), on_finished=lambda r: self._footage_opened(r, frame))

    def _footage_opened(self, opened: Opened, frame: int = 0) -> None:
        self.state.set_footage(opened.footage, opened.status)
        if opened.footage is not None:
            self.state.set_tracking(opened.tracking)
            self.state.set_frame(frame)
        else:
            self.show_error(f"{self.state.project.footage.path}: the footage is {opened.status.value}. "
                            "Relink it from the Project panel.")

    def _footage_changed(self) -> None:
        self.fetcher.set_reader(self.state.footage.reader if self.state.footage else None)
        self._request_frame(self.state.frame)

    def _request_frame(self, frame: int) -> None:
        if self.state.footage is not None:
            self.fetcher.request(frame)

    def _seek(self, frame: int) -> None:
        self.playback.stop()
        self.state.set_frame(frame)

    def _update_title(self) -> None:
        pr = self.state.project
        self.setWindowTitle(f"{pr.name} — Avatar Studio" if pr else "Avatar Studio")

    # --- dialogs and settings --------------------------------------------------------------------
    def _last_dir(self, key: str) -> str:
        return str(self.settings.value(f"dirs/{key}", str(Path.home())))

    def _new_project_dialog(self) -> bool:
        folder = QFileDialog.getExistingDirectory(self, "New project: choose an empty folder", self._last_dir("project"))
        if not folder:
            return False
        self.settings.setValue("dirs/project", str(Path(folder).parent))
        return self.new_project(folder)

    def open_path(self, path: str | Path) -> bool:
        """Open what File > Open was given: a project (its folder or project.json) or splats (.ply)."""
        path = Path(path)
        if path.suffix.lower() == ".ply":
            self.viewport_dock.show()
            self.viewport_dock.raise_()
            return self.run_job(LoadSplatsJob(path), on_finished=lambda r: self.viewport.show_splats(*r)) is not None
        return self.open_project(path)

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open", self._last_dir("open"),
            "Projects and splats (project.json *.ply);;Projects (project.json);;Gaussian splats (*.ply)")
        if path:
            self.settings.setValue("dirs/open", str(Path(path).parent))
            self.open_path(path)

    def _open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder", self._last_dir("project"))
        if folder:
            self.settings.setValue("dirs/project", str(Path(folder).parent))
            self.open_project(folder)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import footage", self._last_dir("footage"), VIDEO_FILTER)
        if path:
            self.settings.setValue("dirs/footage", str(Path(path).parent))
            self.import_footage(path)

    def _relink_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Relink footage", self._last_dir("footage"), VIDEO_FILTER)
        if path:
            self.relink_footage(path)

    def recent_projects(self) -> list[str]:
        value = self.settings.value("recentProjects", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember_recent(self, root: Path) -> None:
        items = [str(root)] + [p for p in self.recent_projects() if p != str(root)]
        self.settings.setValue("recentProjects", items[:MAX_RECENT])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_projects():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_project(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.cancel_job()
        self.playback.stop()
        self.fetcher.close()
        self.viewport.shutdown()
        if self.state.project is not None:
            self.save_project()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        super().closeEvent(event)
