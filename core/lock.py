"""One writer per project: an advisory lock on the project folder held by every job that writes into it and by
the studio while the project is open. The operating system drops it with its process, so a killed writer never
leaves the project locked. Within one process the lock is shared (counted), so the studio's jobs run under the
studio's own hold."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.errors import ProjectError
from core.fsutil import atomic_write_json, clean_temporaries
from core.layout import LOCK_FILE, LOCK_INFO_FILE


@dataclass
class _Held:
    fd: int
    count: int = 0


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()


def acquire(root: Path, what: str) -> bool:
    """Take (or, in this process, share) ``root``'s lock for ``what`` ("train", "studio"); ProjectError naming the
    holder when another process has it. Returns True when this call took it from no one (the first holder in this
    process): the caller then knows no writer runs there. Crash residue (temporaries) is cleaned at that point."""
    root = Path(root)
    with _GUARD:
        held = _HELD.get(root)
        if held is None:
            fd = _take(root)
            if fd is None:
                raise ProjectError(root, f"the project is in use by {holder(root)}: wait for it to finish, or "
                                         "close the project there")
            atomic_write_json(root / LOCK_INFO_FILE, {"pid": os.getpid(), "what": what,
                                                      "since": datetime.now().isoformat(timespec="seconds")})
            clean_temporaries(root)
            held = _HELD[root] = _Held(fd)
        held.count += 1
        return held.count == 1


def tidy(root: Path) -> None:
    """Clean a killed writer's temporaries from ``root`` when no process writes there now (else leave them: a
    writer of this process or another cleaned them when it took the lock)."""
    root = Path(root)
    with _GUARD:
        if root in _HELD:
            return
        try:
            fd = _take(root)
        except OSError:
            return  # a read-only folder: nothing to clean there
        if fd is not None:
            clean_temporaries(root)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _take(root: Path) -> int | None:
    """The lock file's descriptor, locked by this process; None when another process holds it."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(root: Path) -> None:
    """Give back one hold taken by ``acquire``; the last one unlocks the project."""
    root = Path(root)
    with _GUARD:
        held = _HELD[root]
        held.count -= 1
        if held.count == 0:
            (root / LOCK_INFO_FILE).unlink(missing_ok=True)
            fcntl.flock(held.fd, fcntl.LOCK_UN)
            os.close(held.fd)
            del _HELD[root]


def holder(root: Path) -> str:
    """Who holds ``root``'s lock, as the holder wrote it: "PID 4242 (train, since 12:03)"."""
    try:
        info = json.loads((Path(root) / LOCK_INFO_FILE).read_text(encoding="utf-8"))
        since = datetime.fromisoformat(info["since"]).strftime("%H:%M")
        return f"PID {int(info['pid'])} ({info['what']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
