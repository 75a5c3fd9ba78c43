"""Project folders: versioned project.json, atomic writes, footage identity."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from core.errors import ProjectError
from core.layout import LOCK_FILE, PROJECT_FILE
from core.project import FootageRef, FootageStatus, Project, file_sha256


def test_create_save_open_roundtrip(tmp_path):
    p = Project.create(tmp_path / "proj", name="May")
    p.view["frame"] = 42
    p.record_stage("ingest", ["audio_16k.wav"], {"sample_rate": 16000}, {"footage": "abc"})
    p.save()
    q = Project.open(tmp_path / "proj")
    assert q.name == "May" and q.view == {"frame": 42}
    assert q.stages["ingest"].config == {"sample_rate": 16000}
    data = json.loads((tmp_path / "proj" / PROJECT_FILE).read_text())
    assert data["format"] == "avatar-studio-project" and data["version"] == 1


def test_create_refuses_existing_project(tmp_path):
    Project.create(tmp_path)
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(tmp_path)


@pytest.mark.parametrize("content, problem", [
    (b'{"format": "avatar-studio-project", "version": 1, "name": ', "invalid JSON at line 1"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"hello": 1}', "not an Avatar Studio project file"),
    (b'{"format": "avatar-studio-project", "version": 1}', "name: missing"),
    (b'{"format": "avatar-studio-project", "version": 99, "name": "x"}', "newer Avatar Studio"),
])
def test_corrupt_project_json_is_named(tmp_path, content, problem):
    (tmp_path / PROJECT_FILE).write_bytes(content)
    with pytest.raises(ProjectError) as e:
        Project.open(tmp_path)
    assert problem in str(e.value)
    assert str(tmp_path / PROJECT_FILE) in str(e.value)


def test_not_a_project(tmp_path):
    with pytest.raises(ProjectError, match="not an Avatar Studio project"):
        Project.open(tmp_path)
    with pytest.raises(ProjectError, match="project folder not found"):
        Project.open(tmp_path / "nope")


def test_crash_between_write_and_rename_keeps_previous_version(tmp_path, monkeypatch):
    p = Project.create(tmp_path, name="before")
    p.name = "after"

    replace = os.replace

    def crash(src, dst):
        if Path(dst).name == PROJECT_FILE:
            raise KeyboardInterrupt("power cut")  # the process dies after the temp file is written and synced
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        p.save()
    monkeypatch.undo()
    assert Project.open(tmp_path).name == "before"
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([PROJECT_FILE, LOCK_FILE])  # no temp file left


def test_crash_leaving_temp_file_still_loads_previous(tmp_path):
    Project.create(tmp_path, name="kept")
    (tmp_path / f".{PROJECT_FILE}.abc123.json").write_text('{"format": "avatar-studio-project", "vers')
    assert Project.open(tmp_path).name == "kept"


def _ref(path) -> FootageRef:
    st = path.stat()
    info = {"container": "mp4", "duration": 1.0, "fps": "25/1", "width": 64, "height": 64, "frame_count": 25,
            "video_codec": "h264", "audio": []}
    return FootageRef(str(path), file_sha256(path), st.st_size, st.st_mtime, info)


def test_footage_moved_changed_touched_and_relinked(tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"x" * 5000)
    p = Project.create(tmp_path / "proj")
    p.footage = _ref(src)
    assert p.footage_status() is FootageStatus.OK

    os.utime(src, (1, 1))  # touched, same bytes
    assert p.footage_status() is FootageStatus.OK

    src.write_bytes(b"y" * 5000)  # same size, other content
    assert p.footage_status() is FootageStatus.CHANGED
    src.write_bytes(b"x" * 5000)

    moved = tmp_path / "moved" / "clip.mp4"
    moved.parent.mkdir()
    shutil.move(src, moved)
    assert p.footage_status() is FootageStatus.MISSING

    other = tmp_path / "other.mp4"
    other.write_bytes(b"z" * 5000)
    with pytest.raises(ProjectError, match="is not the project's footage"):
        p.relink_footage(other)
    p.relink_footage(moved)
    p.save()
    assert Project.open(tmp_path / "proj").footage_status() is FootageStatus.OK


def test_stage_staleness(tmp_path):
    p = Project.create(tmp_path)
    cfg, inputs = {"a": 1}, {"footage": "h1"}
    assert p.is_stale("ingest", cfg, inputs)
    (tmp_path / "out.bin").write_bytes(b"1")
    p.record_stage("ingest", ["out.bin"], cfg, inputs)
    assert not p.is_stale("ingest", cfg, inputs)
    assert p.is_stale("ingest", {"a": 2}, inputs)
    assert p.is_stale("ingest", cfg, {"footage": "h2"})
    (tmp_path / "out.bin").unlink()
    assert p.is_stale("ingest", cfg, inputs)
