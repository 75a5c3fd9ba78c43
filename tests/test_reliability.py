"""Bad input, damaged files and kills at every stage: each ends in a clear message or a recovery, the project still
opens, and nothing the user made is lost (issue "Reliability", cases 1-5 and 8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.layout import AVATAR_FILE, CHECKPOINT_FILE, LOG_FILE, PROJECT_FILE
from core.pipeline import status
from core.project import Project

ROOT = Path(__file__).resolve().parents[1]


def _hold(root: Path, what: str) -> subprocess.Popen:
    """Another process that holds ``root``'s lock until killed; returns once it holds it."""
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from core.project import Project\n"
            f"with Project.open({str(root)!r}).writing({what!r}):\n    print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --- 1. one writer per project ---------------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_a_killed_holder_lets_go(voiced_project, copy_project, media_dir, capsys):
    root = copy_project(voiced_project("katie_8s.mp4"))
    before = (root / PROJECT_FILE).read_bytes()
    holder = _hold(root, "train")
    try:
        assert main(["ingest", str(media_dir / "may_13s.mp4"), "--project", str(root)]) == 1
        err = capsys.readouterr().err
        assert f"the project is in use by PID {holder.pid} (train, since " in err
        assert (root / PROJECT_FILE).read_bytes() == before          # nothing mixed in
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["ingest", str(media_dir / "may_13s.mp4"), "--project", str(root)]) == 0
    assert Project.open(root).footage.path.endswith("may_13s.mp4")
    assert not status(Project.open(root))["audio"].current          # katie's features: stale, never mixed


def test_a_job_catches_up_with_what_another_process_saved(voiced_project, copy_project, media_dir):
    """A project read before another process changed it is never written back stale."""
    from core.jobs import run_job
    from core.tracking.track import TrackJob

    root = copy_project(voiced_project("katie_8s.mp4"))
    stale_copy = Project.open(root)
    assert main(["ingest", str(media_dir / "may_13s.mp4"), "--project", str(root)]) == 0
    run_job(TrackJob(stale_copy))                                   # tracks what the project now holds
    assert Project.open(root).footage.path.endswith("may_13s.mp4")
    assert status(Project.open(root))["tracking"].current


# --- 2. damaged files ------------------------------------------------------------------------------------------
def _rot(path: Path, seed: int = 0) -> None:
    """Replace a file's bytes with random ones of the same length, keeping its time stamps (bit rot)."""
    st = path.stat()
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, st.st_size, np.uint8).tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.slow
def test_a_damaged_avatar_is_set_aside_and_training_runs_again(trained_project, copy_project, media_dir,
                                                                tmp_path, capsys):
    root = copy_project(trained_project("may_13s.mp4"))
    _rot(root / AVATAR_FILE)
    out = tmp_path / "dub.mp4"
    assert main(["dub", "--project", str(root), "--audio", str(media_dir / "speech_radio_8s_16k.wav"),
                 "--out", str(out), "--end", "1"]) == 1
    err = capsys.readouterr().err
    assert "the avatar is damaged" in err and "moved aside to avatar.pt.damaged: train it again" in err
    assert "Traceback" not in err and not out.exists() and (root / "avatar.pt.damaged").is_file()
    assert main(["train", "--project", str(root), "--preset", "tiny"]) == 0   # no file to delete by hand
    assert status(Project.open(root))["avatar"].current


@pytest.mark.slow
def test_a_damaged_checkpoint_starts_training_over(voiced_project, copy_project, capsys):
    root = copy_project(voiced_project("katie_8s.mp4"))
    (root / CHECKPOINT_FILE).write_bytes(b"\x80\x04not a checkpoint" * 100)
    assert main(["train", "--project", str(root), "--preset", "tiny"]) == 0
    assert (root / "avatar_train.pt.damaged").is_file() and status(Project.open(root))["avatar"].current


def test_a_rewritten_result_without_its_record_reads_as_stale(trained_project, copy_project, capsys):
    """A kill between writing a stage's file and recording it: the record's fingerprint tells."""
    root = copy_project(trained_project("katie_8s.mp4"))
    path = root / AVATAR_FILE
    path.write_bytes(path.read_bytes())  # the same bytes written again, as a run stopped before its record would
    s = status(Project.open(root))["avatar"]
    assert s.state == "stale" and "avatar.pt is not the one recorded" in s.reason and "train again" in s.reason


# --- 3. another config keeps the previous avatar ---------------------------------------------------------------
@pytest.mark.slow
def test_training_with_another_config_keeps_the_previous_avatar(trained_project, copy_project, capsys):
    root = copy_project(trained_project("katie_8s.mp4"))
    first = (root / AVATAR_FILE).read_bytes()
    assert main(["train", "--project", str(root), "--preset", "tiny", "--steps", "2", "1"]) == 0
    capsys.readouterr()
    assert main(["avatars", "--project", str(root)]) == 0
    listed = capsys.readouterr().out
    assert "tiny, 24 steps, trained" in listed
    name = listed.split(":")[0].strip()
    kept = root / "avatars" / name
    assert (kept / AVATAR_FILE).read_bytes() == first                # the 24-step avatar, untouched
    assert main(["avatars", "--project", str(root), "--restore", name]) == 0
    assert (root / AVATAR_FILE).read_bytes() == first
    assert status(Project.open(root))["avatar"].current
    assert main(["avatars", "--project", str(root)]) == 0
    assert "tiny, 3 steps, trained" in capsys.readouterr().out     # the one it replaced is kept in turn


# --- 4. hand-edited project.json -------------------------------------------------------------------------------
EDITS = {
    "stages is a list": (lambda d: d.update(stages=[]), "stages: must be an object of stage records"),
    "duration is text": (lambda d: d["footage"]["info"].update(duration="13 s"),
                         "footage.info.duration: must be a positive number of seconds"),
    "audio missing": (lambda d: d["footage"]["info"].pop("audio"), "footage.info.audio: must be a list"),
    "fps 0": (lambda d: d["footage"]["info"].update(fps="0"), "footage.info.fps: must be a positive frame rate"),
    "fps abc": (lambda d: d["footage"]["info"].update(fps="abc"), "footage.info.fps: must be a positive frame rate"),
    "a file outside": (lambda d: d["stages"]["tracking"].update(files=["../../etc/passwd"]),
                       "stages.tracking.files: must be a list of file names inside the project folder"),
    "unknown key": (lambda d: d["stages"]["tracking"].update(colour="blue"), "stages.tracking.colour: unknown field"),
}


@pytest.mark.parametrize("case", EDITS)
def test_a_hand_edited_project_file_names_each_problem(tracked_project, copy_project, capsys, case):
    root = copy_project(tracked_project("katie_8s.mp4"))
    data = json.loads((root / PROJECT_FILE).read_text())
    edit, problem = EDITS[case]
    edit(data)
    (root / PROJECT_FILE).write_text(json.dumps(data))
    assert main(["info", "--project", str(root)]) == 1
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err


def test_an_unknown_config_key_and_deep_nesting_are_named(tracked_project, copy_project, capsys):
    root = copy_project(tracked_project("katie_8s.mp4"))
    data = json.loads((root / PROJECT_FILE).read_text())
    data["stages"]["tracking"]["config"]["landmarks"]["sharpness"] = 3
    (root / PROJECT_FILE).write_text(json.dumps(data))
    assert main(["track", "--project", str(root)]) == 0              # another config: tracked again, not a crash
    (root / PROJECT_FILE).write_text('{"format": "avatar-studio-project", "version": 1, "view": '
                                     + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["info", "--project", str(root)]) == 1
    assert "nested too deeply" in capsys.readouterr().err


def test_a_ply_with_a_duplicated_property_or_non_finite_values_is_refused(tmp_path):
    from core.errors import MediaError
    from core.render.ply import read_ply, write_ply
    from core.render.splats import Splats

    n = 4
    splats = Splats(means=np.zeros((n, 3), np.float32), quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                    log_scales=np.zeros((n, 3), np.float32), opacity_logits=np.zeros(n, np.float32),
                    sh=np.zeros((n, 1, 3), np.float32))
    good = tmp_path / "good.ply"
    write_ply(good, splats)
    data = good.read_bytes()
    twice = tmp_path / "twice.ply"
    twice.write_bytes(data.replace(b"property float opacity\n", b"property float opacity\nproperty float x\n", 1))
    splats.means[2, 1] = np.nan
    splats.sh[3, 0, 2] = np.inf
    nan = tmp_path / "nan.ply"
    write_ply(nan, splats)
    with pytest.raises(MediaError, match="declares x more than once"):
        read_ply(twice)
    with pytest.raises(MediaError, match="not finite numbers .*1 in means, 1 in sh"):
        read_ply(nan)


# --- 5. crash residue, SIGTERM ---------------------------------------------------------------------------------
def test_a_killed_writers_temporaries_are_cleaned_when_the_project_opens(tracked_project, copy_project):
    root = copy_project(tracked_project("katie_8s.mp4"))
    holder = _hold(root, "train")
    residue = [root / ".avatar.pt.1a2b3c4d.part", root / ".tracking.npz.deadbeef.part"]
    for p in residue:
        p.write_bytes(b"half a file")
    try:
        Project.open(root)
        assert all(p.exists() for p in residue)                     # a writer runs there: its files are kept
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Project.open(root)
    assert not any(p.exists() for p in residue)


@pytest.mark.slow
def test_sigterm_saves_the_checkpoint_and_exits_cleanly(voiced_project, copy_project, capsys):
    root = copy_project(voiced_project("katie_8s.mp4"))
    cli = Path(sys.executable).with_name("avatar-studio-cli")
    proc = subprocess.Popen([str(cli), "train", "--project", str(root), "--preset", "tiny", "--steps", "400", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (root / CHECKPOINT_FILE).exists() and time.monotonic() < deadline:  # training is under way
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "cancelled" in err and "Traceback" not in err
    assert (root / CHECKPOINT_FILE).is_file() and not list(root.glob(".*.part"))
    assert main(["info", "--project", str(root)]) == 0
    checkpoint = (root / CHECKPOINT_FILE).read_bytes()
    assert main(["train", "--project", str(root), "--preset", "tiny", "--steps", "1", "1"]) == 0  # another config
    kept = list((root / "avatars").glob(f"*/{CHECKPOINT_FILE}"))
    assert len(kept) == 1 and kept[0].read_bytes() == checkpoint       # the unfinished run is kept, not replaced
    capsys.readouterr()
    assert main(["avatars", "--project", str(root)]) == 0
    listed = capsys.readouterr().out
    assert "an unfinished run (restore it, then train with its preset and steps to resume)" in listed
    name = next(line.split(":")[0].strip() for line in listed.splitlines() if "unfinished" in line)
    assert main(["avatars", "--project", str(root), "--restore", name]) == 0
    assert (root / CHECKPOINT_FILE).read_bytes() == checkpoint         # back, ready to resume


# --- 8. failed imports -----------------------------------------------------------------------------------------
def test_a_failed_first_import_leaves_no_project_behind(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert main(["ingest", str(bad), "--project", str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("the user's")
    assert main(["ingest", str(bad), "--project", str(existing)]) == 1
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


# --- one error boundary ----------------------------------------------------------------------------------------
def test_an_unexpected_error_is_logged_in_the_project_not_shown_as_a_traceback(tracked_project, copy_project,
                                                                               monkeypatch, capsys):
    from core.tracking import track

    root = copy_project(tracked_project("katie_8s.mp4"))

    def broken(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(track, "fit_pose", broken)
    monkeypatch.setattr(track, "_cached_landmarks", lambda *_: None)
    monkeypatch.setattr(track, "detect_landmarks", broken)
    assert main(["track", "--project", str(root), "--face", "0"]) == 1
    err = capsys.readouterr().err
    assert "something went wrong (RuntimeError: a bug)" in err and str(root / LOG_FILE) in err
    assert "Traceback" not in err
    log = (root / LOG_FILE).read_text()
    assert "avatar-studio-cli track" in log and "RuntimeError: a bug" in log and "Traceback" in log
    assert status(Project.open(root))["tracking"].current            # the failed run changed nothing


# --- 6. a face that leaves the frame ---------------------------------------------------------------------------
GAP = range(60, 110)  # 2 s at 25 fps, inside the training part of katie_8s (the last 20% is held out)


@pytest.mark.slow
def test_frames_without_a_face_are_skipped_by_training_and_passed_through_by_the_dub(media_dir, faceless_clip,
                                                                                      tmp_path, capsys):
    from core.media import FrameReader

    psnr = {}
    for name, gap in (("whole", None), ("gap", GAP)):
        clip, root = faceless_clip(gap), tmp_path / name
        assert main(["ingest", str(clip), "--project", str(root)]) == 0
        assert main(["track", "--project", str(root)]) == 0
        tracked = capsys.readouterr().out
        assert ("warning: no face in 50 frames (25%: 2.4-4.4 s)" in tracked) == (gap is not None)
        assert main(["audio", "--project", str(root)]) == 0
        assert main(["train", "--project", str(root), "--preset", "tiny", "--steps", "150", "150"]) == 0
        assert main(["eval", "--project", str(root)]) == 0
        psnr[name] = json.loads((root / "eval.json").read_text())["face_psnr"]
    with capsys.disabled():
        print(f"\nface PSNR on the held-out frames: {psnr['whole']:.2f} dB without the gap, {psnr['gap']:.2f} dB "
              "with it")
    assert abs(psnr["gap"] - psnr["whole"]) <= 1.0, psnr

    out = tmp_path / "dub.mp4"
    assert main(["dub", "--project", str(tmp_path / "gap"), "--audio", str(media_dir / "speech_radio_8s_16k.wav"),
                 "--out", str(out), "--source-start", str(GAP.start - 5), "--end", "2.4", "--no-watermark"]) == 0
    assert "note: 50 of its frames show footage without a face in view: passed through unchanged" in \
        capsys.readouterr().out
    with FrameReader(out) as dub, FrameReader(faceless_clip(GAP)) as source:
        for k in range(5, 55):                          # dub frame k shows source frame GAP.start - 5 + k
            diff = np.abs(dub.read(k).astype(int) - source.read(GAP.start - 5 + k).astype(int)).mean()
            assert diff < 2.0, (k, diff)                # the same picture, up to a second encoding
        rendered = np.abs(dub.read(2).astype(int) - source.read(GAP.start - 3).astype(int)).mean()
    assert rendered > 0.5                               # before the gap the face was rendered over
