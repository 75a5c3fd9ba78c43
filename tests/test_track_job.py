"""The tracking job in a project: the tracking.npz contract, re-running only what a config change touches,
cancelling without a trace, and `avatar-studio-cli track`."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

from core.cli import main
from core.config import from_dict
from core.errors import ProjectError
from core.ingest import IngestJob
from core.jobs import Cancelled, CancelToken, run_job
from core.layout import PROJECT_FILE
from core.media import VideoWriter
from core.project import FootageRef, Project
from core.tracking import track
from core.tracking.landmarks import BLENDSHAPE_NAMES, LandmarkConfig
from core.tracking.pose import PoseConfig
from core.tracking.stabilize import StabilizeConfig
from core.tracking.track import TRACKING_KEYS, TrackConfig, TrackJob, load_tracking

T = 331  # frames of may_13s.mp4


@pytest.fixture(scope="module")
def tracked_by_cli(media_dir, tmp_path_factory):
    """A project of may_13s.mp4 tracked by `avatar-studio-cli track` (default config): folder, exit code, stdout."""
    root = tmp_path_factory.mktemp("tracked") / "may"
    run_job(IngestJob(Project.create(root), media_dir / "may_13s.mp4"))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["track", "--project", str(root)])
    return root, code, stdout.getvalue()


@pytest.fixture
def tracked(tracked_by_cli):
    """The tracked project's folder (copy it before changing it)."""
    return tracked_by_cli[0]


@pytest.fixture
def project_copy(tracked, tmp_path):
    root = tmp_path / "may"
    shutil.copytree(tracked, root)
    return root


def _snapshot(root):
    """Every file under root -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fail(*args, **kwargs):
    raise AssertionError("this stage should not have run")


@pytest.mark.slow
def test_tracking_npz_holds_the_contract(tracked):
    project = Project.open(tracked)
    data = load_tracking(project)
    assert set(TRACKING_KEYS) <= set(data)
    shapes = {
        "landmarks": (T, 478, 2), "depth": (T, 478), "blendshapes": (T, 52), "blendshape_names": (52,),
        "detected": (T,), "valid": (T,), "head_transform": (T, 4, 4), "focal": (), "cx": (), "cy": (),
        "scale": (), "rot_raw": (T, 3, 3), "rot": (T, 3, 3), "trans_raw": (T, 3), "trans": (T, 3),
        "reproj_px": (T,), "mouth_box": (T, 4), "split_y": (T,), "face_box": (T, 4), "config_json": (),
    }
    for key, shape in shapes.items():
        assert data[key].shape == shape, key
    assert tuple(data["blendshape_names"]) == BLENDSHAPE_NAMES
    assert data["detected"].dtype == bool and data["valid"].all()
    for key in ("rot_raw", "rot"):
        r = data[key]
        assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-4), key
        assert np.allclose(np.linalg.det(r), 1, atol=1e-4), key
    assert 100 < float(data["focal"]) < 5 * 512
    assert float(data["cx"]) == pytest.approx(256) and float(data["cy"]) == pytest.approx(256)
    assert np.nanmean(data["reproj_px"]) < 10  # px: the template is not this face
    assert (data["trans"][:, 2] > 0).all()  # the head is in front of the camera
    assert from_dict(TrackConfig, json.loads(str(data["config_json"]))) == TrackConfig()

    rec = project.stages["tracking"]
    assert rec.files == ["tracking.npz", "landmarks.npz", "stabilizer_keypoints.npz"]
    assert rec.inputs == {"footage": project.footage.sha256}
    assert from_dict(TrackConfig, rec.config) == TrackConfig()
    assert not project.is_stale("tracking", rec.config, rec.inputs)


@pytest.mark.slow
def test_unchanged_config_runs_nothing(project_copy, monkeypatch):
    before = _snapshot(project_copy)
    monkeypatch.setattr(track, "detect_landmarks", _fail)
    monkeypatch.setattr(track, "fit_pose", _fail)
    monkeypatch.setattr(track, "stabilize", _fail)
    result = run_job(TrackJob(Project.open(project_copy)))
    assert result["landmarks"].shape == (T, 478, 2)
    assert _snapshot(project_copy) == before


@pytest.mark.slow
def test_changed_stabilizer_reuses_the_landmarks(project_copy, monkeypatch):
    before = load_tracking(Project.open(project_copy))
    landmarks_file = (project_copy / "landmarks.npz").read_bytes()
    monkeypatch.setattr(track, "detect_landmarks", _fail)
    config = TrackConfig(stabilize=StabilizeConfig(stage2_iterations=30))  # also quicker
    run_job(TrackJob(Project.open(project_copy), config))

    project = Project.open(project_copy)
    after = load_tracking(project)
    assert (project_copy / "landmarks.npz").read_bytes() == landmarks_file
    assert np.array_equal(after["landmarks"], before["landmarks"])
    assert np.array_equal(after["rot_raw"], before["rot_raw"])  # same landmarks and pose config: same fit
    assert from_dict(TrackConfig, json.loads(str(after["config_json"]))) == config
    assert from_dict(TrackConfig, project.stages["tracking"].config) == config


class _Detected(Exception):
    pass


@pytest.mark.slow
def test_changed_landmark_config_runs_detection_and_a_failure_changes_nothing(project_copy, monkeypatch):
    before = _snapshot(project_copy)

    def detect(reader, config, progress, cancel):
        assert config == LandmarkConfig(max_gap_frames=3)
        raise _Detected

    monkeypatch.setattr(track, "detect_landmarks", detect)
    with pytest.raises(_Detected):
        run_job(TrackJob(Project.open(project_copy), TrackConfig(landmarks=LandmarkConfig(max_gap_frames=3))))
    assert _snapshot(project_copy) == before


@pytest.mark.slow
@pytest.mark.parametrize("config, at", [
    (TrackConfig(landmarks=LandmarkConfig(max_gap_frames=3)), 0.2),   # during landmark detection
    (TrackConfig(pose=PoseConfig(coarse_steps=9)), 0.55),             # during the pose fit
    (TrackConfig(stabilize=StabilizeConfig(smooth_weight=16.0)), 0.8),  # during the stabilizer
])
def test_cancel_leaves_the_project_as_it_was(project_copy, config, at):
    before = _snapshot(project_copy)
    cancel = CancelToken()
    seen = []

    def progress(p):
        seen.append(p.fraction)
        if p.fraction >= at:
            cancel.cancel()

    with pytest.raises(Cancelled):
        TrackJob(Project.open(project_copy), config).run(progress, cancel)
    assert max(seen) < 0.97  # it stopped before saving
    assert _snapshot(project_copy) == before


@pytest.mark.slow
def test_cli_track_prints_a_summary(tracked_by_cli):
    _, code, out = tracked_by_cli
    assert code == 0
    assert f"a face on {T}/{T} frames" in out and "focal" in out and "mean reprojection error" in out


def test_cli_track_footage_without_a_face(tmp_path, capsys):
    clip = tmp_path / "noise.mp4"
    rng = np.random.default_rng(1)
    with VideoWriter(clip, Fraction(25), (96, 96), audio=np.zeros(16000 * 30 // 25, np.float32)) as w:
        for _ in range(30):
            w.write(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    proj = tmp_path / "p"
    assert main(["ingest", str(clip), "--project", str(proj)]) == 0
    before = _snapshot(proj)
    capsys.readouterr()
    assert main(["track", "--project", str(proj)]) == 1
    err = capsys.readouterr().err
    assert "no face found" in err and "30 frames" in err and "noise.mp4" in err
    assert _snapshot(proj) == before


def test_cli_track_bad_face_index(tmp_path, capsys):
    assert main(["track", "--project", str(tmp_path), "--face", "-1"]) == 2
    assert "--face must be between 0 and" in capsys.readouterr().err


def test_track_needs_footage_that_is_there(tmp_path):
    project = Project.create(tmp_path / "empty")
    with pytest.raises(ProjectError, match="has no footage"):
        run_job(TrackJob(project))
    project.footage = FootageRef(path=str(tmp_path / "gone.mp4"), sha256="0" * 64, size=1, mtime=0.0, info={})
    with pytest.raises(ProjectError, match="footage not found") as e:
        run_job(TrackJob(project))
    assert "gone.mp4" in str(e.value)
    assert json.loads((tmp_path / "empty" / PROJECT_FILE).read_text())["footage"] is None


def test_load_tracking_missing_or_corrupt(tmp_path):
    project = Project.create(tmp_path / "p")
    with pytest.raises(ProjectError, match="no tracking results") as e:
        load_tracking(project)
    assert "tracking.npz" in str(e.value)
    project.path("tracking.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ProjectError, match="the tracking is damaged .* moved aside to tracking.npz.damaged: track"):
        load_tracking(project)
    assert not project.path("tracking.npz").exists() and project.path("tracking.npz.damaged").is_file()
    with open(project.path("tracking.npz"), "wb") as f:
        np.savez(f, landmarks=np.zeros((2, 478, 2), np.float32))
    with pytest.raises(ProjectError, match="it lacks depth.*tracking.npz.damaged.2"):
        load_tracking(project)
