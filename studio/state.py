"""The session's state, apart from any view: the open project and each of its stages' status, its opened footage
(or a file shown in its place, such as an exported dub), the playhead and transport, the overlays shown, and the one
running job. Panels read it and listen to its signals; they change it only through its methods, and ask its job
runner for work."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from core.dub import DubJob, DubResult
from core.errors import AvatarStudioError, MediaError
from core.ingest import IngestJob
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.layout import AUDIO_FILE
from core.media import FrameReader, load_audio
from core.pipeline import StageStatus
from core.pipeline import status as stage_status
from core.project import FootageStatus, Project
from core.tracking.track import TrackJob, load_tracking
from studio.editing import EditSession
from studio.playback import Playback
from studio.workers import JobRunner


@dataclass
class Footage:
    """Footage opened for viewing: random-access frames and its sound (the project's 16 kHz speech track, or a
    dub's own track at its rate)."""

    reader: FrameReader
    audio: np.ndarray  # float32 [S] mono
    audio_rate: int

    @property
    def fps(self) -> Fraction:
        return self.reader.fps

    @property
    def frame_count(self) -> int:
        return len(self.reader)

    @classmethod
    def open(cls, path: Path) -> Footage:
        """A video file with sound (a dub) opened for viewing, its first audio track at the file's own rate."""
        reader = FrameReader(path)
        try:
            if not reader.info.has_audio:
                raise MediaError(path, "has no audio track")
            rate = reader.info.audio[0].sample_rate
            return cls(reader, load_audio(path, rate), rate)
        except BaseException:
            reader.close()
            raise


@dataclass
class Opened:
    status: FootageStatus
    footage: Footage | None
    tracking: dict[str, np.ndarray] | None  # tracking.npz's arrays, when the project has them


@dataclass
class OpenFootageJob:
    """Check the project's source (hashing it if it was touched) and open it for viewing."""

    project: Project
    name: str = "Open footage"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> Opened:
        ref = self.project.footage
        assert ref is not None
        progress(Progress(0.0, "Checking footage"))
        status = ref.status()
        if status is not FootageStatus.OK:
            return Opened(status, None, None)
        cancel.check(self.name)
        progress(Progress(0.3, "Indexing frames"))
        reader = FrameReader(ref.path)
        try:
            cancel.check(self.name)
            progress(Progress(0.8, "Loading audio"))
            rate = self.project.stages["ingest"].config["sample_rate"]
            audio = load_audio(self.project.path(AUDIO_FILE), rate)  # float32 [S]
            # Tracking made from other footage is not shown as this footage's: the panels say it is stale.
            tracking = load_tracking(self.project) if stage_status(self.project)["tracking"].current else None
        except BaseException:
            reader.close()
            raise
        progress(Progress(1.0, "Footage ready"))
        return Opened(status, Footage(reader, audio, rate), tracking)


@dataclass
class ImportJob:
    """Ingest a clip into the project, then open it for viewing: one job, one progress bar."""

    project: Project
    footage: Path
    name: str = "Import footage"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> Opened:
        IngestJob(self.project, self.footage).run(span(progress, 0.0, 0.7), cancel)
        return OpenFootageJob(self.project).run(span(progress, 0.7, 1.0), cancel)


@dataclass
class TrackForViewJob:
    """Track the project's footage, then load the result for the panels."""

    project: Project
    face: int | None = None  # None = largest, most central; N = N-th from the left
    name: str = "Track face"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> dict[str, np.ndarray]:
        TrackJob(self.project, face=self.face).run(span(progress, 0.0, 0.98), cancel)
        return load_tracking(self.project)


@dataclass
class DubForViewJob:
    """Dub, then open the dub for the Viewer: one job, one progress bar."""

    dub: DubJob
    name: str = "Export dub"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> tuple[DubResult, Footage]:
        result = self.dub.run(span(progress, 0.0, 0.98), cancel)
        progress(Progress(0.98, f"Opening {result.path.name}"))
        return result, Footage.open(result.path)  # not cancellable: the dub is written, showing it is quick


class StudioState(QObject):
    project_changed = Signal()
    footage_changed = Signal()
    frame_changed = Signal(int)
    playing_changed = Signal(bool)
    tracking_changed = Signal()
    stages_changed = Signal()        # a stage's result became current, stale or missing
    avatar_changed = Signal()        # a run made the project's avatar anew
    overlays_changed = Signal()
    notice = Signal(str)             # something the user must read (shown by the window)
    live_frame = Signal(object)      # core.live.session.LiveFrame just shown by live mode; None: live mode ended

    def __init__(self) -> None:
        super().__init__()
        self.project: Project | None = None
        self.stages: dict[str, StageStatus] = {}  # core.pipeline's status of the open project's stages
        self.footage: Footage | None = None
        self.footage_status: FootageStatus | None = None  # None until checked (off the UI thread)
        self.tracking: dict[str, np.ndarray] | None = None  # tracking.npz of the project's footage
        self.preview: Path | None = None  # the file shown in the footage's place (a dub); None: the footage itself
        self.frame = 0
        self.playing = False
        self.overlays = {"landmarks": False, "mesh": False}  # drawn over the Viewer's picture
        self.jobs = JobRunner()
        self.jobs.ended.connect(lambda _name: self.refresh_stages())
        self.playback = Playback(self)  # the transport: plays, steps and shuttles the playhead
        self.edits = EditSession(self.jobs, self)  # the expression edits over the tracked footage, their undo
        self.edits.notice.connect(self.notice)

    def set_project(self, project: Project | None) -> None:
        """Make ``project`` the open one and keep it locked for this process while it is (ProjectError, and the
        previous project stays open, when another process writes there)."""
        if project is not None:
            project.hold("studio")
        if self.project is not None:
            self.project.let_go()
        self.set_footage(None, None)
        self.project = project
        self.refresh_stages()  # before the panels hear of the project, so they read its stages' status
        self.project_changed.emit()

    def refresh_stages(self) -> None:
        """Read every stage's status again (after a job, an import or a new project); listeners hear of changes."""
        stages = stage_status(self.project) if self.project is not None else {}
        if stages != self.stages:
            self.stages = stages
            self.stages_changed.emit()

    def stage(self, name: str) -> StageStatus | None:
        return self.stages.get(name)

    # --- footage -----------------------------------------------------------------------------------
    def open_footage(self, frame: int = 0) -> None:
        """Check and open the project's footage in a job, then show it at ``frame``."""
        self.jobs.run(OpenFootageJob(self.project), on_finished=lambda opened: self.show_opened(opened, frame))

    def show_opened(self, opened: Opened, frame: int = 0) -> None:
        """Show what an OpenFootageJob or ImportJob opened (or say why the footage cannot be shown)."""
        self.set_footage(opened.footage, opened.status)
        if opened.footage is not None:
            self.set_tracking(opened.tracking)
            self.set_frame(frame)
        else:
            self.notice.emit(f"{self.project.footage.path}: the footage is {opened.status.value}. "
                             "Relink it from the Project panel.")
        self.refresh_stages()

    def relink_footage(self, path: str | Path) -> bool:
        """Point the project at its footage's new place (the same content) and open it there."""
        try:
            self.project.relink_footage(path)
            self.project.save()
        except AvatarStudioError as e:
            self.notice.emit(str(e))
            return False
        self.open_footage(self.frame)
        return True

    def set_footage(self, footage: Footage | None, status: FootageStatus | None) -> None:
        """Show the project's footage (None: none yet); its tracking is cleared until set."""
        self._show(footage, status, None)
        self.set_tracking(None)

    def show_preview(self, footage: Footage) -> None:
        """Show ``footage`` (a dub) view-only in the project's footage's place; the project, its footage status and
        tracking stay as they are. ``set_footage`` brings the project's footage back."""
        self._show(footage, self.footage_status, footage.reader.path)

    def _show(self, footage: Footage | None, status: FootageStatus | None, preview: Path | None) -> None:
        if self.footage is not None and self.footage is not footage:
            self.footage.reader.close()
        self.footage, self.footage_status, self.preview = footage, status, preview
        self.frame = 0
        self.footage_changed.emit()
        self.frame_changed.emit(0)

    def set_tracking(self, tracking: dict[str, np.ndarray] | None) -> None:
        if tracking is None and self.tracking is None:
            return  # nothing to clear: spares the panels a relayout
        self.tracking = tracking
        self.edits.load(self.project, tracking)
        self.tracking_changed.emit()
        self.refresh_stages()

    def avatar_made(self) -> None:
        """A training run wrote the project's avatar: the viewport reloads it, the window shows it."""
        self.refresh_stages()
        self.avatar_changed.emit()

    def set_overlays(self, **shown: bool) -> None:
        """Show or hide the Viewer's overlays by name (``landmarks``, ``mesh``)."""
        unknown = set(shown) - set(self.overlays)
        if unknown:
            raise ValueError(f"no overlay named {sorted(unknown)}")
        if any(self.overlays[k] != v for k, v in shown.items()):
            self.overlays.update(shown)
            self.overlays_changed.emit()

    # --- playhead ----------------------------------------------------------------------------------
    @property
    def frame_count(self) -> int:
        return self.footage.frame_count if self.footage else 0

    def set_frame(self, index: int) -> None:
        """Move the playhead, clamped to the footage."""
        index = max(0, min(int(index), self.frame_count - 1)) if self.frame_count else 0
        if index != self.frame:
            self.frame = index
            self.frame_changed.emit(index)

    def set_playing(self, playing: bool) -> None:
        if playing != self.playing:
            self.playing = playing
            self.playing_changed.emit(playing)
