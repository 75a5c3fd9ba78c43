"""Earlier avatars, kept: a run with another config (or on newer tracking or features) first moves the project's
avatar and checkpoint into ``avatars/NAME/`` with their stage record, so nothing trained is lost without an
explicit choice; ``restore`` brings one back (the one it replaces is kept the same way)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.errors import ProjectError
from core.fsutil import atomic_write_json, unused
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import AVATAR_FILE, AVATARS_DIR, CHECKPOINT_FILE
from core.project import Project, StageRecord, writes_project

STAGE = "avatar"
RECORD_FILE = "record.json"  # the archived avatar's stage record, beside its files


@dataclass(frozen=True)
class Archived:
    name: str                   # its folder under avatars/
    preset: str
    steps: int                  # the run's planned steps (both stages)
    trained: bool               # a finished avatar (False: only an unfinished run's checkpoint)
    created: str                # when its record was made ("" for an unfinished run)


def keep_current(project: Project) -> Path | None:
    """Move the project's avatar and checkpoint (whichever exist) with the avatar's stage record into a new
    ``avatars/`` folder; returns it, or None when there was nothing to keep. Saves the project."""
    files = [f for f in (AVATAR_FILE, CHECKPOINT_FILE) if project.path(f).is_file()]
    if not files:
        return None
    record = project.stages.get(STAGE)
    config = record.config if record is not None and project.path(AVATAR_FILE).is_file() else {}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = unused(project.path(AVATARS_DIR) / f"{stamp}-{config.get('preset', 'unfinished')}", "-")
    folder.mkdir(parents=True)
    atomic_write_json(folder / RECORD_FILE, vars(record) if config else {})
    for f in files:
        os.replace(project.path(f), folder / f)
    if config:
        del project.stages[STAGE]
    project.save()
    return folder


def archived(project: Project) -> list[Archived]:
    """The kept avatars, oldest first."""
    root = project.path(AVATARS_DIR)
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        record = _record(folder)
        config = record.config if record is not None else {}
        out.append(Archived(folder.name, str(config.get("preset", "unfinished")),
                            int(config.get("stage1_steps", 0)) + int(config.get("stage2_steps", 0)),
                            (folder / AVATAR_FILE).is_file(), record.created if record is not None else ""))
    return out


def restore(project: Project, name: str) -> Path | None:
    """Make the kept avatar ``name`` the project's again (an unfinished run: its checkpoint, which training with
    the same settings resumes); the current one is kept first. Returns where the current one went (None when
    there was none)."""
    folder = project.path(AVATARS_DIR) / name
    if "/" in name or "\\" in name or name in ("", ".", "..") or not folder.is_dir():
        names = ", ".join(a.name for a in archived(project)) or "none"
        raise ProjectError(project.root, f"has no kept avatar named {name!r} (kept: {names})")
    record, trained = _record(folder), (folder / AVATAR_FILE).is_file()
    if not trained and not (folder / CHECKPOINT_FILE).is_file():
        raise ProjectError(folder, "holds neither an avatar nor a checkpoint: nothing to restore")
    kept = keep_current(project)
    for f in (AVATAR_FILE, CHECKPOINT_FILE):
        if (folder / f).is_file():
            os.replace(folder / f, project.path(f))
    if trained and record is not None:
        project.stages[STAGE] = record
    project.save()
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()
    return kept


def _record(folder: Path) -> StageRecord | None:
    try:
        data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        return StageRecord(**data) if data else None
    except (OSError, ValueError, TypeError):
        return None


@dataclass
class RestoreAvatarJob:
    """``restore`` as a job, under the project's lock (the studio runs it like any other)."""

    project: Project
    kept: str                   # the kept avatar's name
    name: str = "Restore avatar"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> Path | None:
        progress(Progress(0.0, f"Restoring {self.kept}"))
        replaced = restore(self.project, self.kept)
        progress(Progress(1.0, f"Restored {self.kept}"))
        return replaced
