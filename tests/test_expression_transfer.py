"""Expression tracks in and out of a project: a Live Link Face CSV round trip, a hand-made 60 fps take resampled
to the footage's 25 fps, malformed files named, JSON for scripts, and clearing the edits (issue "Expression
studio": ARKit CSV and the CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.expression.arkit_csv import ARKIT_NAMES, EYE_NAMES, HEAD_NAMES
from core.expression.edits import load_take
from core.layout import EDITS_FILE
from core.project import Project
from core.tracking.landmarks import BLENDSHAPE_NAMES, EXPRESSION_BLENDSHAPES
from core.tracking.track import load_tracking

CORE = [BLENDSHAPE_NAMES.index(n) for n in EXPRESSION_BLENDSHAPES]


def test_export_then_import_gives_the_same_track(tracked_project, copy_project, tmp_path, capsys):
    """As it is with --no-keep-in-range; through the subject's codebook (the default) the seven core blendshapes
    of the subject's own take come back close, the rest exactly."""
    root = copy_project(tracked_project("katie_8s.mp4"))
    out = tmp_path / "take.csv"
    assert main(["expression", "--project", str(root), "--export", str(out)]) == 0
    assert main(["expression", "--project", str(root), "--import", str(out), "--no-keep-in-range"]) == 0
    assert "200 frames" in capsys.readouterr().out
    project = Project.open(root)
    tracked = np.clip(load_tracking(project)["blendshapes"], 0, 1)
    edited = load_take(project, len(tracked))["blendshapes"]
    arkit = [i for i, n in enumerate(BLENDSHAPE_NAMES) if n != "_neutral"]
    assert np.abs(edited[:, arkit] - tracked[:, arkit]).max() < 1e-4

    assert main(["expression", "--project", str(root), "--import", str(out)]) == 0
    assert "kept in the subject's range" in capsys.readouterr().out
    edited = load_take(project, len(tracked))["blendshapes"]
    rest = [i for i in arkit if i not in CORE]
    assert np.abs(edited[:, rest] - tracked[:, rest]).max() < 1e-4
    assert np.abs(edited[:, CORE] - tracked[:, CORE]).mean() < 0.04


def test_a_hand_made_60fps_take_is_resampled_to_the_footage(tracked_project, copy_project, tmp_path, capsys):
    """Written line by line as Live Link Face does: JawOpen rises linearly over 2 s, BrowInnerUp holds 0.7."""
    root = copy_project(tracked_project("katie_8s.mp4"))
    header = ["Timecode", "BlendShapeCount", *ARKIT_NAMES, *HEAD_NAMES, *EYE_NAMES]
    lines = [",".join(header)]
    for i in range(121):                                 # 0 .. 2 s at 60 fps
        values = {n: 0.0 for n in ARKIT_NAMES} | {"JawOpen": i / 120, "BrowInnerUp": 0.7}
        row = [f"10:04:{5 + i // 60:02d}:{i % 60:02d}.000", "61", *(f"{values[n]:.5f}" for n in ARKIT_NAMES),
               *["0"] * 9]
        lines.append(",".join(row))
    take = tmp_path / "phone.csv"
    take.write_text("\n".join(lines) + "\n")
    assert main(["expression", "--project", str(root), "--import", str(take), "--no-keep-in-range"]) == 0
    assert "51 frames" in capsys.readouterr().out       # 0 .. 2 s of 25 fps footage
    project = Project.open(root)
    tracked = load_tracking(project)["blendshapes"]
    edited = load_take(project, len(tracked))["blendshapes"]
    jaw, brow = BLENDSHAPE_NAMES.index("jawOpen"), BLENDSHAPE_NAMES.index("browInnerUp")
    assert np.allclose(edited[:51, jaw], np.arange(51) / 25 / 2, atol=2e-3)
    assert np.allclose(edited[:51, brow], 0.7, atol=1e-4)
    assert np.array_equal(edited[51:], tracked[51:].clip(0, 1))   # past the take: the track as it was

    # Kept in the subject's range (the default): inner brows held up for 2 s with the rest of the face still,
    # which Katie never does, come down toward what she does, smoothly (no step at the codebook's tokens).
    assert main(["expression", "--project", str(root), "--import", str(take)]) == 0
    kept = load_take(project, len(tracked))["blendshapes"]
    assert kept[:51, brow].mean() < 0.7 - 0.15
    assert np.abs(np.diff(kept[5:45, brow])).max() < 0.02
    assert np.allclose(kept[:51, jaw], np.arange(51) / 25 / 2, atol=2e-3)  # not a core shape: as imported


@pytest.mark.parametrize("content, problem", [
    ("", "is empty"),
    ("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,61,0.5\n", "lacks 51 of the 52 ARKit blendshape columns"),
    (None, "is not a finite number"),
])
def test_a_malformed_take_is_named_and_the_edits_are_untouched(tracked_project, copy_project, tmp_path, capsys,
                                                               content, problem):
    root = copy_project(tracked_project("katie_8s.mp4"))
    if content is None:  # a valid layout with one cell that is not a number
        good = tmp_path / "good.csv"
        assert main(["expression", "--project", str(root), "--export", str(good)]) == 0
        rows = good.read_text().splitlines()
        rows[3] = rows[3].replace(rows[3].split(",")[5], "abc", 1)
        content = "\n".join(rows) + "\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    capsys.readouterr()
    assert main(["expression", "--project", str(root), "--import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.csv" in err and problem in err and "Traceback" not in err
    assert not (root / EDITS_FILE).exists()


def test_json_export_at_30fps_and_clear(tracked_project, copy_project, tmp_path, capsys):
    root = copy_project(tracked_project("katie_8s.mp4"))
    out = tmp_path / "track.json"
    assert main(["expression", "--project", str(root), "--export", str(out), "--fps", "30"]) == 0
    data = json.loads(out.read_text())
    assert data["fps"] == "30" and data["names"] == list(ARKIT_NAMES) and len(data["blendshapes"]) == 240
    assert len(data["head"]) == 240 and len(data["blendshapes"][0]) == 52
    assert main(["expression", "--project", str(root), "--import", str(tmp_path / "x.csv")]) == 1  # no such file
    csv = tmp_path / "take.csv"
    assert main(["expression", "--project", str(root), "--export", str(csv)]) == 0
    assert main(["expression", "--project", str(root), "--import", str(csv)]) == 0
    assert main(["expression", "--project", str(root), "--clear"]) == 0
    assert not (root / EDITS_FILE).exists() and (root / f"{EDITS_FILE}.cleared").is_file()   # set aside
