"""A project: a folder with a versioned ``project.json`` and one file or folder per pipeline stage.

Source footage is referenced, not copied, with a content hash, so a changed or moved source is
detected and reported. Every write of ``project.json`` is atomic (temporary file, fsync, rename): a
crash between writing and renaming leaves the previous version loadable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from core import lock
from core.errors import ProjectError
from core.fsutil import atomic_write_bytes, set_aside
from core.layout import LOCK_FILE, LOCK_INFO_FILE, PROJECT_FILE
from core.project_schema import problems

FORMAT = "avatar-studio-project"
VERSION = 1  # bump with a migration in _MIGRATIONS when the layout changes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | Path, on_chunk: Callable[[int], None] | None = None, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes; ``on_chunk(bytes_done)`` lets a job report progress and cancel."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            done += len(block)
            if on_chunk:
                on_chunk(done)
    return h.hexdigest()


class FootageStatus(enum.Enum):
    OK = "ok"
    MISSING = "missing"   # moved or deleted: relink it
    CHANGED = "changed"   # same path, other content: stage results made from it are stale


@dataclass
class FootageRef:
    """The source clip: where it was, what it was (hash, size, mtime) and its probed media info."""

    path: str
    sha256: str
    size: int
    mtime: float
    info: dict[str, Any]

    def status(self) -> FootageStatus:
        p = Path(self.path)
        if not p.is_file():
            return FootageStatus.MISSING
        st = p.stat()
        if st.st_size != self.size:
            return FootageStatus.CHANGED
        if st.st_mtime == self.mtime:
            return FootageStatus.OK
        # Touched (copied, restored from backup): only the content decides.
        return FootageStatus.OK if file_sha256(p) == self.sha256 else FootageStatus.CHANGED


@dataclass
class StageRecord:
    """What a stage wrote, from which config and inputs: the basis of staleness checks."""

    files: list[str]
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # name -> content hash of each input
    created: str = field(default_factory=_now)
    fingerprints: dict[str, list[int]] = field(default_factory=dict)  # file -> [size, mtime_ns] when recorded

    def changed_file(self, root: Path) -> str | None:
        """The first of its files that is missing or no longer the one recorded (a run stopped between writing
        it and recording it, or the file was replaced), else None."""
        for name in self.files:
            path = root / name
            if not path.exists():
                return name
            st = path.stat()
            if name in self.fingerprints and self.fingerprints[name] != [st.st_size, st.st_mtime_ns]:
                return name
        return None


@dataclass
class Project:
    root: Path
    name: str
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)
    footage: FootageRef | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)  # the studio's per-project view state (frame, …)
    digest: str = field(default="", repr=False, compare=False)  # sha256 of project.json as last read or written

    # --- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, name: str | None = None) -> "Project":
        root = Path(root).expanduser().absolute()
        if (root / PROJECT_FILE).exists():
            raise ProjectError(root, "a project already exists here; open it instead")
        if root.exists() and not root.is_dir():
            raise ProjectError(root, "is a file, not a folder")
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root=root, name=name or root.name)
        project.save()
        return project

    @classmethod
    def open(cls, root: str | Path) -> "Project":
        root = Path(root).expanduser().absolute()
        if root.is_file() and root.name == PROJECT_FILE:
            root = root.parent
        file = root / PROJECT_FILE
        if not root.is_dir():
            raise ProjectError(root, "project folder not found")
        if not file.is_file():
            raise ProjectError(root, f"is not an Avatar Studio project (no {PROJECT_FILE})")
        try:
            raw = file.read_bytes()
            data = json.loads(raw.decode("utf-8"))
        except OSError as e:
            raise ProjectError(file, f"project file cannot be read ({e.strerror})") from None
        except RecursionError:
            raise ProjectError(file, "project file is corrupt (nested too deeply)") from None
        except UnicodeDecodeError as e:
            raise ProjectError(file, f"project file is corrupt (not UTF-8 text: {e.reason})") from None
        except json.JSONDecodeError as e:
            raise ProjectError(file, f"project file is corrupt (invalid JSON at line {e.lineno}, column {e.colno}: {e.msg})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ProjectError(file, "project file is corrupt (not an Avatar Studio project file)")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise ProjectError(file, f"project file is corrupt (bad version {version!r})")
        if version > VERSION:
            raise ProjectError(file, f"was saved by a newer Avatar Studio (format {version}; this one reads up to {VERSION})")
        for v in range(version, VERSION):
            data = _MIGRATIONS[v](data)
        wrong = problems(data)
        if wrong:
            raise ProjectError(file, f"project file has {len(wrong)} problem{'s' if len(wrong) > 1 else ''}: "
                                     f"{'; '.join(wrong[:8])}{'; …' if len(wrong) > 8 else ''}. Fix "
                                     f"{'them' if len(wrong) > 1 else 'it'} or restore the file from a backup")
        project = cls._from_json(root, data)
        project.digest = hashlib.sha256(raw).hexdigest()
        lock.tidy(root)
        return project

    def save(self) -> None:
        """Write project.json atomically, under the project's lock; the previous version survives any crash
        before the rename."""
        self.modified = _now()
        lock.acquire(self.root, "save")
        try:
            blob = (json.dumps(self._to_json(), indent=2) + "\n").encode("utf-8")
            atomic_write_bytes(self.root / PROJECT_FILE, blob)
            self.digest = hashlib.sha256(blob).hexdigest()
        finally:
            lock.release(self.root)

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Hold the project's lock while writing into it (ProjectError naming the holder when another process
        writes there). Taken from no one, it first catches up with what another process saved since this copy
        was read, so a job never writes back a stale project."""
        first = lock.acquire(self.root, what)
        try:
            if first:
                self._catch_up()
            yield
        finally:
            lock.release(self.root)

    def hold(self, what: str) -> None:
        """Keep the project locked for this process (the studio, while the project is open); ``let_go`` ends it."""
        lock.acquire(self.root, what)

    def let_go(self) -> None:
        lock.release(self.root)

    def _catch_up(self) -> None:
        file = self.root / PROJECT_FILE
        try:
            on_disk = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError:
            return
        if self.digest and on_disk != self.digest:
            fresh = Project.open(self.root)
            for f in dataclasses.fields(self):
                setattr(self, f.name, getattr(fresh, f.name))

    # --- footage -----------------------------------------------------------------------------------
    def footage_status(self) -> FootageStatus | None:
        return self.footage.status() if self.footage else None

    def checked_footage(self) -> FootageRef:
        """The footage, present and unchanged since it was imported; ProjectError naming what to do otherwise."""
        ref = self.footage
        if ref is None:
            raise ProjectError(self.root, "has no footage: import a clip first (avatar-studio-cli ingest)")
        status = ref.status()
        if status is FootageStatus.MISSING:
            raise ProjectError(ref.path, "footage not found: relink the moved file")
        if status is FootageStatus.CHANGED:
            raise ProjectError(ref.path, "footage changed since it was imported: import it again")
        return ref

    def relink_footage(self, path: str | Path) -> None:
        """Point a moved source at its new place; refuses a file with other content."""
        if self.footage is None:
            raise ProjectError(self.root, "has no footage to relink")
        path = Path(path).expanduser().absolute()
        if not path.is_file():
            raise ProjectError(path, "file not found")
        digest = file_sha256(path)
        if digest != self.footage.sha256:
            raise ProjectError(path, "is not the project's footage (its content differs from what was imported)")
        st = path.stat()
        self.footage.path, self.footage.size, self.footage.mtime = str(path), st.st_size, st.st_mtime

    # --- stages ------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Where a stage's file or folder lives inside the project."""
        return self.root / name

    def record_stage(self, stage: str, files: list[str], config: dict[str, Any], inputs: dict[str, str]) -> None:
        """Record a stage's result: its files (with their fingerprints), config and inputs."""
        stats = {f: self.path(f).stat() for f in files if self.path(f).exists()}
        prints = {f: [st.st_size, st.st_mtime_ns] for f, st in stats.items()}
        self.stages[stage] = StageRecord(files=list(files), config=config, inputs=dict(inputs), fingerprints=prints)

    def is_stale(self, stage: str, config: dict[str, Any], inputs: dict[str, str]) -> bool:
        """True when a stage has no result, lost or changed a file, or was made from another config or inputs."""
        rec = self.stages.get(stage)
        if rec is None or rec.config != config or rec.inputs != inputs:
            return True
        return rec.changed_file(self.root) is not None

    # --- JSON --------------------------------------------------------------------------------------
    def _to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "created": self.created,
            "modified": self.modified,
            "footage": None if self.footage is None else vars(self.footage),
            "stages": {k: vars(v) for k, v in self.stages.items()},
            "view": self.view,
        }

    @classmethod
    def _from_json(cls, root: Path, d: dict[str, Any]) -> "Project":
        return cls(
            root=root,
            name=str(d["name"]),
            created=str(d["created"]),
            modified=str(d["modified"]),
            footage=None if d.get("footage") is None else FootageRef(**d["footage"]),
            stages={k: StageRecord(**v) for k, v in d.get("stages", {}).items()},
            view=dict(d.get("view", {})),
        )


# Migrations from format v to v+1, applied in order on open.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def damaged(path: str | Path, what: str, why: str, fix: str) -> ProjectError:
    """A damaged result is moved aside (NAME.damaged), so its stage can run again at once and nothing is deleted;
    returns the error that says so."""
    aside = set_aside(path)
    return ProjectError(path, f"{what} is damaged ({why}) and was moved aside to {aside.name}: {fix}")


def writes_project(run: Callable[..., Any]) -> Callable[..., Any]:
    """A job's ``run`` held under its project's lock (``self.project``), named by the job."""
    @functools.wraps(run)
    def locked(job: Any, *args: Any, **kwargs: Any) -> Any:
        with job.project.writing(job.name):
            return run(job, *args, **kwargs)
    return locked


def remove_empty(root: str | Path, keep_folder: bool) -> None:
    """Remove a project that holds nothing but its own bookkeeping (a failed first import), and its folder unless
    ``keep_folder`` (it existed before) or it holds anything else."""
    root = Path(root)
    for name in (PROJECT_FILE, LOCK_FILE, LOCK_INFO_FILE):
        (root / name).unlink(missing_ok=True)
    if not keep_folder and not any(root.iterdir()):
        root.rmdir()


def is_project(path: str | Path) -> bool:
    return os.path.isfile(Path(path) / PROJECT_FILE)
