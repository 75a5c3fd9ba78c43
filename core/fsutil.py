"""Atomic file writes: a crash or a cancel never leaves a half-written file in place of a good one."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
import zipfile
from typing import Any, Iterator

import numpy as np


def temp_beside(path: str | Path) -> Path:
    """A new empty hidden file ``.NAME.XXXX.part`` in ``path``'s folder (same file system: rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
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
