"""The main window: docks (from the panel registry), menus, shortcuts and the status bar. Work happens in panels,
which ask the state's job runner for it; the window shows what the runner and the state report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from core.dub import DubJob, DubResult
from core.errors import AvatarStudioError, log_unexpected
from core.expression.transfer import ExportTakeJob, ImportTakeJob
from core.jobs import Job
from core.layout import AVATAR_FILE
from core.project import Project
from studio.docks import PANELS
from studio.frames import FrameFetcher
from studio.panels.export import ExportDialog
from studio.panels.project import VIDEO_FILTER
from studio.panels.viewer import MODES, ViewerPanel
from studio.panels.viewport import LoadSplatsJob
from studio.state import DubForViewJob, Footage, ImportJob, StudioState
from studio.workers import JobWorker

MAX_RECENT = 10
EXPRESSION_FILTER = "ARKit blendshapes, Live Link Face (*.csv)"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings()
        self.state = StudioState()
        self.playback = self.state.playback
        self.fetcher = FrameFetcher()
        self.last_error: str | None = None  # the last message shown to the user (tests read it)

        self.viewer = ViewerPanel(self.state)
        self.setCentralWidget(self.viewer)
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, QDockWidget] = {}
        for spec in PANELS:
            panel = self.panels[spec.key] = spec.make(self.state)
            dock = self.docks[spec.key] = QDockWidget(spec.title, self)
            dock.setObjectName(f"dock-{spec.title.lower()}")
            dock.setWidget(panel)
            if hasattr(panel, "show_requested"):
                panel.show_requested.connect(lambda d=dock: (d.show(), d.raise_()))
        self.reset_layout()

        self._build_status_bar()
        self._build_menus()

        jobs = self.state.jobs
        jobs.started.connect(self._job_started)
        jobs.progress.connect(self._job_progress)
        jobs.failed.connect(self._job_failed)
        jobs.cancelled.connect(lambda name: self.statusBar().showMessage(f"{name} cancelled; nothing was changed.",
                                                                         5000))
        jobs.ended.connect(self._job_ended)
        jobs.refused.connect(self.show_error)
        self.state.notice.connect(self.show_error)
        self.fetcher.connect_ready(self.viewer.show_frame)
        self.state.frame_changed.connect(self._request_frame)
        self.state.footage_changed.connect(self._footage_changed)
        self.state.project_changed.connect(self._update_title)
        self.state.project_changed.connect(self._update_export)
        self.state.footage_changed.connect(self._update_export)
        self.state.tracking_changed.connect(self._update_export)
        self.state.avatar_changed.connect(self._avatar_trained)
        self.playback.notice.connect(lambda text: self.statusBar().showMessage(text, 8000))

        self.resize(1280, 800)
        if geometry := self.settings.value("window/geometry"):
            self.restoreGeometry(geometry)
        if layout := self.settings.value("window/state"):
            self.restoreState(layout)
        self._update_title()

    @property
    def job(self) -> JobWorker | None:
        """The running job's worker, if any."""
        return self.state.jobs.worker

    # --- building ----------------------------------------------------------------------------------
    def reset_layout(self) -> None:
        """Every panel docked where the registry puts it, shown, tabbed and sized as on first run
        (View ▸ Reset Layout)."""
        for spec in PANELS:
            dock = self.docks[spec.key]
            dock.setFloating(False)
            self.addDockWidget(spec.area, dock)  # moves a dock the user placed elsewhere back
            dock.show()
        for spec in PANELS:
            if spec.tab_with is not None:
                self.tabifyDockWidget(self.docks[spec.tab_with], self.docks[spec.key])
        for spec in PANELS:
            if spec.tab_with is None:
                self.docks[spec.key].raise_()
        for spec in PANELS:
            if spec.size is not None:
                across = (Qt.Orientation.Vertical if spec.area in (Qt.DockWidgetArea.TopDockWidgetArea,
                                                                   Qt.DockWidgetArea.BottomDockWidgetArea)
                          else Qt.Orientation.Horizontal)
                self.resizeDocks([self.docks[spec.key]], [spec.size], across)

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
        panels = self.panels
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
        self.import_expressions_action = self._action("Import E&xpressions (ARKit CSV)…",
                                                      self._import_expressions_dialog, None, file)
        self.export_expressions_action = self._action("Export Ex&pressions (ARKit CSV)…",
                                                      self._export_expressions_dialog, None, file)
        file.addSeparator()
        self.export_action = self._action("&Export Dub…", self.export_dialog, "Ctrl+E", file)
        self.project_footage_action = self._action("Show Project &Footage", self.show_project_footage, None, file)
        self._update_export()
        file.addSeparator()
        self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, file)

        edit = self.menuBar().addMenu("&Edit")
        undo = self.state.edits.undo
        for action, keys in ((undo.createUndoAction(self, "&Undo"), QKeySequence.StandardKey.Undo),
                             (undo.createRedoAction(self, "&Redo"), "Ctrl+Shift+Z")):
            action.setShortcut(QKeySequence(keys))
            self.addAction(action)
            edit.addAction(action)
        edit.addSeparator()
        self._action("Set &Key (K; while playing, K stops)", self.key_or_stop, "K", edit)
        self._action("&Remove Key", self.remove_key, "Shift+K", edit)
        self._action("&Delete Selected Key", self.delete_selected_key, QKeySequence.StandardKey.Delete, edit)
        self._action("Previous Key", lambda: self.jump_to_key(-1), "[", edit)
        self._action("Next Key", lambda: self.jump_to_key(1), "]", edit)

        play = self.menuBar().addMenu("&Playback")
        self._action("Play / Pause", self.playback.toggle, "Space", play)
        self._action("Previous Frame", lambda: self.playback.step(-1), "Left", play)
        self._action("Next Frame", lambda: self.playback.step(1), "Right", play)
        play.addSeparator()
        self._action("Shuttle Backward", lambda: self.playback.shuttle(-1), "J", play)
        self._action("Stop", self.playback.stop, None, play)
        self._action("Shuttle Forward", lambda: self.playback.shuttle(1), "L", play)
        play.addSeparator()
        self._action("First Frame", lambda: self._seek(0), "Home", play)
        self._action("Last Frame", lambda: self._seek(self.state.frame_count - 1), "End", play)

        track = self.menuBar().addMenu("&Tracking")
        self._action("&Track Face", lambda: panels["tracking"].run(), "Ctrl+T", track)

        audio = self.menuBar().addMenu("&Audio")
        self._action("&Train Audio Encoder", lambda: self._audio_from_menu("ave+whisper"), None, audio)
        self._action("&Extract Audio Features", lambda: self._audio_from_menu("speech"), None, audio)

        avatar = self.menuBar().addMenu("A&vatar")
        self._action("&Train Avatar", lambda: panels["training"].run(), None, avatar)

        view = self.menuBar().addMenu("&View")
        toolbar = self.addToolBar("Viewer")
        toolbar.setObjectName("toolbar-viewer")
        modes = QActionGroup(self)
        self.viewer_actions: dict[str, QAction] = {}
        for i, (mode, text) in enumerate(MODES.items()):
            action = self.viewer_actions[mode] = QAction(text, self, checkable=True,
                                                         shortcut=QKeySequence(f"Ctrl+{i + 1}"))
            action.setChecked(mode == self.viewer.mode)
            action.toggled.connect(lambda on, m=mode: on and self.viewer.set_mode(m))
            modes.addAction(action)
            self.addAction(action)
            view.addAction(action)
            toolbar.addAction(action)
        self.viewer.mode_changed.connect(lambda m: self.viewer_actions[m].setChecked(True))
        view.addSeparator()
        for name, text, key in (("landmarks", "Landmark overlay", "Shift+L"),
                                ("mesh", "Mesh overlay (stabilized pose)", "Shift+M")):
            action = QAction(text, self, checkable=True, shortcut=QKeySequence(key))
            action.toggled.connect(lambda on, n=name: self.state.set_overlays(**{n: on}))
            self.state.overlays_changed.connect(lambda a=action, n=name: a.setChecked(self.state.overlays[n]))
            self.addAction(action)
            view.addAction(action)
        view.addSeparator()
        self._action("Reset Viewport Camera", panels["viewport"].view.reset_view, None, view)
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        self._action("Reset &Layout", self.reset_layout, None, view)

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

    # --- keys ---------------------------------------------------------------------------------------
    def _keyed_controls(self) -> tuple[str, ...]:
        return self.panels["expression"].linked(self.state.edits.selected)

    def key_or_stop(self) -> None:
        """K: stops playback or the shuttle, as in editing tools; stopped, keys the selected control at the
        playhead (its left/right partner too when linked)."""
        if self.state.playing:
            self.playback.stop()
        elif self.state.edits.project is not None:
            self.state.edits.key(self._keyed_controls(), self.state.frame)

    def remove_key(self) -> None:
        """Shift+K: removes the selected control's key at the playhead."""
        self.state.edits.remove_keys(self._keyed_controls(), self.state.frame)

    def delete_selected_key(self) -> None:
        if self.state.edits.selected_key is not None:
            channel, frame = self.state.edits.selected_key
            self.state.edits.remove_keys((channel,), frame)

    def jump_to_key(self, direction: int) -> None:
        """[ and ]: the playhead to the previous or next frame keyed on any control."""
        frames = self.state.edits.key_frames()
        here = self.state.frame
        target = (max((f for f in frames if f < here), default=None) if direction < 0 else
                  min((f for f in frames if f > here), default=None))
        if target is not None:
            self._seek(target)

    # --- jobs ---------------------------------------------------------------------------------------
    def run_job(self, job: Job[Any], on_finished, on_errored=None) -> JobWorker | None:
        """Run one of the window's own jobs (import, open, dub) on the state's runner."""
        return self.state.jobs.run(job, on_finished=on_finished, on_errored=on_errored)

    def cancel_job(self) -> None:
        if self.job is not None:
            self.state.jobs.cancel()
            self.job_label.setText(f"Cancelling {self.job.name}…")

    def _job_started(self, name: str) -> None:
        """Progress and Cancel in the status bar; playback stops and the menus that would start work wait."""
        self.playback.stop()
        for action in (self.import_action, self.export_action, self.import_expressions_action,
                       self.export_expressions_action):
            action.setEnabled(False)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.show()
        self.job_label.setText(name)
        self.progress_bar.setValue(0)

    def _job_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(fraction * 1000))
        if message:
            self.job_label.setText(message)

    def _job_failed(self, name: str, error: Exception) -> None:
        """An expected failure shows its message; a bug says where its details were written, never a traceback."""
        if isinstance(error, AvatarStudioError):
            self.show_error(f"{name} failed: {error}")
            return
        self.report_unexpected(error, name)

    def report_unexpected(self, error: BaseException, doing: str) -> None:
        """A bug: its traceback goes to the log (the project's, when one is open) and the user reads where."""
        pr = self.state.project
        log = log_unexpected(error, pr.root if pr is not None else None, doing)
        self.show_error(f"Something went wrong in {doing} ({type(error).__name__}: {error}). The details are in "
                        f"{log}.")

    def _job_ended(self, _name: str) -> None:
        if self.job is not None:
            return  # the ended job's callback already started the next one
        self.import_action.setEnabled(True)
        self._update_export()
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.hide()

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
            self.state.open_footage(project.view.get("frame", 0))
        return project is not None

    def _adopt_project(self, make, folder: str | Path) -> Project | None:
        """Create or open a project (``make``), make it current and remember it; errors are shown."""
        try:
            project = make(folder)
            self.state.set_project(project)  # refused while another process writes there
        except AvatarStudioError as e:
            self.show_error(str(e))
            return None
        self._remember_recent(project.root)
        return project

    def save_project(self) -> None:
        pr = self.state.project
        if pr is None:
            return
        if self.state.preview is None:  # with a dub shown, the footage's playhead was kept when it was exported
            pr.view["frame"] = self.state.frame
        self.state.edits.flush()
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
        return self.run_job(ImportJob(pr, Path(path)), on_finished=self.state.show_opened,
                            on_errored=self._import_failed)

    def _audio_from_menu(self, encoder: str) -> None:
        self.panels["audio"].set_encoder(encoder)
        self.panels["audio"].run()

    def _avatar_trained(self) -> None:
        """Bring the Viewport (which shows the new avatar) forward and play the footage from the playhead: the avatar speaks (with a
        dub in the Viewer, the footage comes back first; it plays when asked)."""
        self.docks["viewport"].show()
        self.docks["viewport"].raise_()
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
            self.state.open_footage(self.state.project.view.get("frame", 0))

    def _update_export(self) -> None:
        """Export needs a trained avatar and no job running; expressions in and out, a tracked face; Show Project
        Footage, a dub in the Viewer."""
        pr = self.state.project
        self.export_action.setEnabled(self.job is None and pr is not None and pr.path(AVATAR_FILE).is_file())
        tracked = self.job is None and pr is not None and self.state.tracking is not None
        self.import_expressions_action.setEnabled(tracked)
        self.export_expressions_action.setEnabled(tracked)
        self.project_footage_action.setEnabled(self.state.preview is not None)

    # --- expressions in and out ----------------------------------------------------------------------
    def import_expressions(self, path: str | Path, keep_in_range: bool = True) -> JobWorker | None:
        """Make the ARKit CSV take at ``path`` the performance under the edits (a job); the previous take is set
        aside, the keys stay."""
        project, edits = self.state.project, self.state.edits
        if project is None or self.state.tracking is None:
            self.show_error("Track the face first: an expression take drives the tracked face.")
            return None
        edits.flush()

        def done(frames: int) -> None:
            if self.state.project is project:
                edits.load(project, self.state.tracking)
            self.statusBar().showMessage(f"Imported {Path(path).name}: {frames} frames"
                                         + (", kept in the subject's range" if keep_in_range else ""), 8000)

        return self.run_job(ImportTakeJob(project, Path(path), keep_in_range), on_finished=done)

    def confirm_import_expressions(self, path: str | Path) -> QMessageBox:
        """Ask (window-modal, never exec'd) whether to import ``path`` and whether to keep it in the subject's
        range (on by default: another person's take is rebuilt from this face's own motions)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Import expressions",
                          f"Make {Path(path).name} the edited expressions of {self.state.project.name}?",
                          QMessageBox.StandardButton.Cancel, self)
        accept = box.addButton("Import", QMessageBox.ButtonRole.AcceptRole)
        box.setInformativeText("Its blendshapes drive the face over the frames it spans, under your keys. A take "
                               "imported before is set aside in the project folder.")
        keep = QCheckBox("Keep expressions in the subject's range")
        keep.setChecked(True)
        keep.setToolTip("Rebuild the brows and blinks from what this face does in its footage (its expression "
                        "codebook)")
        box.setCheckBox(keep)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: box.clickedButton() is accept
                             and self.import_expressions(path, keep.isChecked()))
        box.open()
        return box

    def export_expressions(self, path: str | Path) -> JobWorker | None:
        """Write the edited track (the tracked one without edits) as an ARKit CSV or JSON (a job)."""
        self.state.edits.flush()
        return self.run_job(ExportTakeJob(self.state.project, Path(path)), on_finished=lambda frames: (
            self.statusBar().showMessage(f"Wrote {frames} frames of expressions to {path}", 8000)))

    def _import_expressions_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import expressions", self._last_dir("expressions"),
                                              EXPRESSION_FILTER)
        if path:
            self.settings.setValue("dirs/expressions", str(Path(path).parent))
            self.confirm_import_expressions(path)

    def _export_expressions_dialog(self) -> None:
        start = Path(self._last_dir("expressions")) / f"{self.state.project.name}_expressions.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export expressions", str(start),
                                              f"{EXPRESSION_FILTER};;JSON for scripts (*.json)")
        if path:
            self.settings.setValue("dirs/expressions", str(Path(path).parent))
            self.export_expressions(path)

    def _import_failed(self, _error: Exception) -> None:
        if self.state.project is not None and self.state.project.footage is not None:
            self.state.open_footage(self.state.frame)  # the project kept its previous footage

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
            self.docks["viewport"].show()
            self.docks["viewport"].raise_()
            viewport = self.panels["viewport"]
            return self.run_job(LoadSplatsJob(path), on_finished=lambda r: viewport.show_splats(*r)) is not None
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
        self.viewer.shutdown()
        for panel in self.panels.values():
            if hasattr(panel, "shutdown"):  # panels with threads of their own stop them
                panel.shutdown()
        if self.state.project is not None:
            self.save_project()
            self.state.set_project(None)  # the edits are saved as the project closes  # the project is unlocked for other processes
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        super().closeEvent(event)
