"""avatar-studio-cli ingest / info, and the bad inputs a user may give it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from core.cli import main
from core.layout import LOCK_FILE, PROJECT_FILE
from core.media import VideoWriter, load_audio, probe
from core.project import Project


def test_ingest_then_info(media_dir, tmp_path, capsys):
    proj = tmp_path / "may"
    assert main(["ingest", str(media_dir / "may_13s.mp4"), "--project", str(proj)]) == 0
    p = Project.open(proj)
    assert p.footage.info["frame_count"] == 331
    assert p.footage.info["video_codec"] == "h264"
    audio = load_audio(proj / "audio_16k.wav")
    assert abs(len(audio) / 16000 - probe(media_dir / "may_13s.mp4").audio[0].duration) < 0.05
    capsys.readouterr()
    assert main(["info", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "may_13s.mp4" in out and "[ok]" in out and "331 frames" in out and "stage ingest" in out


def test_info_reports_moved_footage(media_dir, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "katie_8s.mp4", clip)
    assert main(["ingest", str(clip), "--project", str(tmp_path / "p")]) == 0
    clip.rename(tmp_path / "elsewhere.mp4")
    capsys.readouterr()
    assert main(["info", "--project", str(tmp_path / "p")]) == 0
    assert "[missing]" in capsys.readouterr().out


def _silent_clip(path):
    with VideoWriter(path, Fraction(25), (64, 64)) as w:
        for i in range(10):
            w.write(np.full((64, 64, 3), i * 20, np.uint8))


@pytest.mark.parametrize("case, problem", [
    ("text.mp4", "not a media file"),
    ("truncated.mp4", "truncated"),
    ("speech.wav", "no video stream"),
    ("missing.mp4", "file not found"),
])
def test_ingest_bad_footage_is_named_and_project_untouched(media_dir, tmp_path, capsys, case, problem):
    bad = tmp_path / case
    if case == "text.mp4":
        bad.write_text("this is not a video\n")
    elif case == "truncated.mp4":
        bad.write_bytes((media_dir / "may_13s.mp4").read_bytes()[:100_000])
    elif case == "speech.wav":
        shutil.copy(media_dir / "speech_radio_8s_16k.wav", bad)
    proj = tmp_path / "proj"
    Project.create(proj)
    before = (proj / PROJECT_FILE).read_bytes()
    assert main(["ingest", str(bad), "--project", str(proj)]) == 1
    err = capsys.readouterr().err
    assert case in err and problem in err
    assert (proj / PROJECT_FILE).read_bytes() == before
    assert sorted(f.name for f in proj.iterdir()) == [LOCK_FILE, PROJECT_FILE]  # the lock file stays, unlocked


def test_silent_footage_imports_and_a_sound_file_without_sound_is_named(tmp_path, capsys):
    silent = tmp_path / "silent.mp4"
    _silent_clip(silent)
    assert main(["ingest", str(silent), "--project", str(tmp_path / "p")]) == 0
    assert "no sound" in capsys.readouterr().out
    proj = tmp_path / "q"
    Project.create(proj)
    before = (proj / PROJECT_FILE).read_bytes()
    assert main(["ingest", str(silent), "--audio", str(silent), "--project", str(proj)]) == 1
    err = capsys.readouterr().err
    assert "silent.mp4" in err and "no audio track" in err
    assert (proj / PROJECT_FILE).read_bytes() == before


def test_info_on_corrupt_project(tmp_path, capsys):
    (tmp_path / PROJECT_FILE).write_text("{ not json")
    assert main(["info", "--project", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "project.json" in err and "corrupt" in err


def test_console_script_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core.cli", "info", "--project", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not an Avatar Studio project" in r.stderr
    r = subprocess.run([sys.executable, "-m", "core.cli", "bogus"], capture_output=True, text=True)
    assert r.returncode == 2
