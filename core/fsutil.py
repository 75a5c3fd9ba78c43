"""Atomic file writes: a crash or a cancel never leaves a half-written file in place of a good one; damaged files
are moved aside, never deleted, and the temporaries a killed writer left are cleaned up."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PART_SUFFIX = ".part"


class Unreadable(Exception):
    """A file that exists but cannot be read as what it should be."""


def load_torch(path: str | Path) -> Any:
    """A ``torch.save`` file, read with ``weights_only`` (no code from the file ever runs); Unreadable, with the
    reason, for anything that is not such a file (random bytes, another format, a truncated write)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - unpickling a foreign file fails in many ways, each one "unreadable"
        raise Unreadable(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}") from e


def set_aside(path: str | Path, suffix: str = ".damaged") -> Path:
    """Move a file out of the way as NAME.damaged (or another ``suffix``; NAME.damaged.2, … when taken), so what
    made it can run again and the file is still there to look at; returns where it went."""
    path = Path(path)
    aside = unused(path.with_name(path.name + suffix))
    os.replace(path, aside)
    return aside


def unused(path: Path, sep: str = ".") -> Path:
    """``path`` if nothing is there, else the first of PATH{sep}2, PATH{sep}3, … that is free."""
    n, free = 1, path
    while free.exists():
        n += 1
        free = path.with_name(f"{path.name}{sep}{n}")
    return free


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Remove the ``.NAME.XXXX.part`` files killed writers left in ``folder``; call it only while no writer runs
    there (under the project's lock). Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{PART_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def temp_beside(path: str | Path) -> Path:
    """A new empty hidden file ``.NAME.XXXX.part`` in ``path``'s folder (same file system: rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}"
    tmp.open("xb").close()  # "x": never reuse a file; default permissions, unlike mkstemp's 0600
    return tmp


def commit(tmp: Path, path: str | Path) -> None:
    """Make the finished ``tmp`` durable and move it over ``path`` in one step."""
    path = Path(path)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if os.name == "posix":  # make the rename itself durable; Windows cannot open a folder for this
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success commit it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.
    """
    tmp = temp_beside(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an .npz file, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a temp name
            np.savez(f, **arrays)


def load_npz(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file (no pickles): all, or those of ``keys`` it holds (the others are not read);
    None when it cannot be read."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array
            return None
        with z:
            return {k: z[k] for k in z.files if keys is None or k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
