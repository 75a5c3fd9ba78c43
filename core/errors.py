"""The errors a user can meet. Each message names the file (or project) and the problem, in plain words."""

from __future__ import annotations

import traceback
from datetime import datetime
from pathlib import Path


class AvatarStudioError(Exception):
    """Base of every error meant to be shown to a user as it is."""


class MediaError(AvatarStudioError):
    """A media file is missing, unreadable, truncated, or lacks what the step needs."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ProjectError(AvatarStudioError):
    """A project folder is missing, corrupt, or refers to footage that changed or moved."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def log_unexpected(error: BaseException, project: Path | None, doing: str) -> Path:
    """Write an unexpected error's traceback to the project's log (or the user's log folder without a project)
    and return the log's path, for a message that points there instead of showing the traceback."""
    import platformdirs

    from core.layout import LOG_FILE

    log = Path(project) / LOG_FILE if project is not None and Path(project).is_dir() else (
        Path(platformdirs.user_log_dir("avatar-studio", appauthor=False)) / "errors.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().isoformat(timespec="seconds")
    text = "".join(traceback.format_exception(error))
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"--- {stamp}  {doing}\n{text}\n")
    return log
