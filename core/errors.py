"""The errors a user can meet. Each message names the file (or project) and the problem, in plain words."""

from __future__ import annotations

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
