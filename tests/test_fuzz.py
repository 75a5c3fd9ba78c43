"""Fuzzing the two files a user may hand-edit or bring from elsewhere: every mutated project.json and 3DGS PLY
either loads or raises the project's own error (a message), never anything else. Each test counts the cases it ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import AvatarStudioError
from core.layout import PROJECT_FILE
from core.pipeline import status
from core.project import Project
from core.render.ply import read_ply, write_ply
from core.render.splats import Splats

CASES = 2000
FUZZ = settings(max_examples=CASES, deadline=None, database=None, derandomize=True,  # the same cases in CI
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                      max_size=4),
                    max_leaves=12)


def _valid_project() -> dict:
    info = {"path": "/nowhere/clip.mp4", "container": "mp4", "duration": 8.0, "fps": "25/1", "width": 512,
            "height": 512, "frame_count": 200, "video_codec": "h264", "variable_frame_rate": False,
            "audio": [{"index": 0, "codec": "aac", "sample_rate": 16000, "channels": 1, "duration": 8.0}]}
    record = {"files": ["tracking.npz"], "config": {"landmarks": {"face": None}}, "inputs": {"footage": "a" * 64},
              "created": "2026-12-05T12:00:00+00:00", "fingerprints": {"tracking.npz": [100, 1]}}
    return {"format": "avatar-studio-project", "version": 1, "name": "p", "created": "2026-12-05T12:00:00+00:00",
            "modified": "2026-12-05T12:00:00+00:00",
            "footage": {"path": "/nowhere/clip.mp4", "sha256": "a" * 64, "size": 100, "mtime": 1.0, "info": info},
            "stages": {"tracking": record, "audio": {**record, "files": ["audio_features.npz"],
                                                     "inputs": {"footage": "a" * 64, "tracking": "x"}}},
            "view": {"frame": 3}}


def _paths(node, prefix=()):
    """Every path into a JSON tree (keys and indices), the root's included."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


@st.composite
def mutated_projects(draw) -> bytes:
    d = _valid_project()
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(d) if p]
        path = draw(st.sampled_from(paths))
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(("replace", "delete", "add")))
        if how == "replace":
            parent[path[-1]] = draw(JSON)
        elif how == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON)
        else:
            parent.append(draw(JSON))
    blob = json.dumps(d).encode()
    if draw(st.booleans()) and draw(st.booleans()):  # a quarter of them: bytes damaged too
        at = draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + draw(st.binary(max_size=4)) + blob[at + draw(st.integers(0, 4)):]
    return blob


def _fuzz(cases: st.SearchStrategy, load: Callable[[Any], None], what: str) -> None:
    """``load`` each of CASES generated cases: each either loads or raises an AvatarStudioError; both happen."""
    ran = {"loaded": 0, "refused": 0}

    @FUZZ
    @given(cases)
    def case(x: Any) -> None:
        try:
            load(x)
            ran["loaded"] += 1
        except AvatarStudioError:
            ran["refused"] += 1

    case()
    print(f"\n{what}: {ran['loaded'] + ran['refused']} mutated files, {ran['loaded']} loaded, "
          f"{ran['refused']} refused with a message")
    assert ran["loaded"] + ran["refused"] >= CASES and ran["loaded"] > 0 and ran["refused"] > 0


def test_mutated_project_files_load_or_say_what_is_wrong(tmp_path):
    def load(blob: bytes) -> None:
        (tmp_path / PROJECT_FILE).write_bytes(blob)
        status(Project.open(tmp_path))          # what 'info' and the studio read next

    _fuzz(mutated_projects(), load, "project.json")


def _valid_ply(path: Path) -> bytes:
    rng = np.random.default_rng(0)
    n = 6
    write_ply(path, Splats(means=rng.normal(size=(n, 3)).astype(np.float32),
                           quats=rng.normal(size=(n, 4)).astype(np.float32),
                           log_scales=rng.normal(size=(n, 3)).astype(np.float32),
                           opacity_logits=rng.normal(size=n).astype(np.float32),
                           sh=rng.normal(size=(n, 4, 3)).astype(np.float32)))
    return path.read_bytes()


HEADER_WORDS = ("ply", "format", "binary_little_endian", "binary_big_endian", "ascii", "1.0", "element", "vertex",
                "face", "property", "float", "double", "uchar", "int", "list", "x", "y", "opacity", "f_rest_0",
                "rot_0", "scale_2", "end_header", "comment", "0", "6", "-1", "99999999999999999999")


@st.composite
def mutated_plys(draw, valid: bytes) -> bytes:
    end = valid.index(b"end_header\n") + len(b"end_header\n")
    lines, body = valid[:end].decode().splitlines(), valid[end:]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(("replace", "duplicate", "delete", "insert")))
        if how == "replace":
            lines[i] = " ".join(draw(st.lists(st.sampled_from(HEADER_WORDS), min_size=1, max_size=4)))
        elif how == "duplicate":
            lines.insert(i, lines[i])
        elif how == "delete" and len(lines) > 1:
            del lines[i]
        else:
            lines.insert(i, draw(st.text(max_size=20)).replace("\n", " "))
    body = bytearray(body)
    for _ in range(draw(st.integers(0, 4))):
        if body:
            at = draw(st.integers(0, len(body) - 1))
            body[at:at + 4] = draw(st.sampled_from((b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff\xff\xff\xff",
                                                    b"\x01\x02\x03\x04")))
    if draw(st.booleans()):
        body = body[:draw(st.integers(0, len(body)))]
    return ("\n".join(lines) + "\n").encode("utf-8", "replace") + bytes(body)


def test_mutated_ply_files_load_or_say_what_is_wrong(tmp_path):
    def load(blob: bytes) -> None:
        path = tmp_path / "case.ply"
        path.write_bytes(blob)
        splats = read_ply(path)
        assert all(np.isfinite(a).all() for a in (splats.means, splats.quats, splats.log_scales,
                                                  splats.opacity_logits, splats.sh))

    _fuzz(mutated_plys(_valid_ply(tmp_path / "valid.ply")), load, "PLY")
