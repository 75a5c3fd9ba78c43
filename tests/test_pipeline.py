"""Results know what they were made from: a re-import or a changed encoder makes the avatar stale, and every
consumer says so instead of writing a wrong video or failing on a tensor shape."""

from __future__ import annotations

import pytest

from core.cli import main
from core.pipeline import status
from core.project import Project


def _dub(root, media_dir, out) -> int:
    return main(["dub", "--project", str(root), "--audio", str(media_dir / "speech_radio_8s_16k.wav"),
                 "--out", str(out), "--end", "1"])


@pytest.mark.slow
def test_other_footage_makes_every_result_stale_and_consumers_refuse(trained_project, copy_project, media_dir,
                                                                     tmp_path, capsys):
    root = copy_project(trained_project("may_13s.mp4"))
    assert all(status(Project.open(root))[s].current for s in ("tracking", "audio", "avatar"))
    assert main(["ingest", str(media_dir / "katie_8s.mp4"), "--project", str(root)]) == 0
    capsys.readouterr()
    out = tmp_path / "dub.mp4"
    assert _dub(root, media_dir, out) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "other footage than the project's katie_8s.mp4" in err
    assert err.index("track the face again") < err.index("audio features again") < err.index("train again")
    assert main(["eval", "--project", str(root)]) == 1
    assert "other footage" in capsys.readouterr().err and not (root / "eval.json").exists()
    assert main(["info", "--project", str(root)]) == 0
    info = capsys.readouterr().out
    for stage in ("tracking", "audio", "avatar"):
        assert f"{stage}: stale" in info
    assert (root / "avatar.pt").is_file()                                  # kept on disk, never mixed in


@pytest.mark.slow
def test_a_changed_encoder_asks_to_train_again_and_training_makes_it_current(trained_project, copy_project,
                                                                           media_dir, tmp_path, capsys):
    root = copy_project(trained_project("may_13s.mp4"))
    assert main(["audio", "--project", str(root), "--encoder", "mel"]) == 0
    capsys.readouterr()
    out = tmp_path / "dub.mp4"
    assert _dub(root, media_dir, out) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "now from the mel encoder" in err and "train again" in err
    assert "size of tensor" not in err and "Traceback" not in err
    assert main(["train", "--project", str(root), "--preset", "tiny"]) == 0
    assert status(Project.open(root))["avatar"].current
    assert _dub(root, media_dir, out) == 0 and out.is_file()


@pytest.mark.slow
def test_stages_refuse_to_build_on_another_footages_results(trained_project, copy_project, media_dir, capsys):
    root = copy_project(trained_project("may_13s.mp4"))
    assert main(["ingest", str(media_dir / "katie_8s.mp4"), "--project", str(root)]) == 0
    capsys.readouterr()
    assert main(["audio", "--project", str(root)]) == 1
    assert "the tracking was made from other footage" in capsys.readouterr().err
    assert main(["train", "--project", str(root), "--preset", "tiny"]) == 1
    assert "other footage" in capsys.readouterr().err
    for command in (["track"], ["audio"], ["train", "--preset", "tiny"]):
        assert main([command[0], "--project", str(root), *command[1:]]) == 0
    assert all(status(Project.open(root))[s].current for s in ("tracking", "audio", "avatar"))


@pytest.mark.slow
@pytest.mark.gui
def test_the_studio_shows_each_stage_as_info_does(window, qtbot, trained_project, copy_project, media_dir,
                                                  artifacts_dir, capsys):
    root = copy_project(trained_project("may_13s.mp4"))
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    assert window.panels["tracking"].stage_status.isHidden()       # current: the panel's summary says the rest
    assert window.panels["audio"].stage_status.text() == "Result: current."

    assert main(["ingest", str(media_dir / "katie_8s.mp4"), "--project", str(root)]) == 0
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.job is None and window.state.footage is not None, timeout=20_000)
    assert window.state.tracking is None                       # another footage's tracking is not shown as this one's
    tracking, audio = window.panels["tracking"].stage_status.text(), window.panels["audio"].stage_status.text()
    assert tracking.startswith("Result: stale. The tracking was made from other footage than the project's katie_8s")
    assert audio.startswith("Result: stale. The audio features were made from other footage")
    assert "Stale: the avatar was made from other footage" in window.panels["training"].summary.text()
    window.docks["viewport"].raise_()
    qtbot.waitUntil(lambda: window.panels["viewport"].file_label.text().startswith("Avatar: the avatar was made from other "
                                                                           "footage"), timeout=10_000)
    assert window.width() <= 1400                              # a long reason is cut in the view, never widens it
    qtbot.wait(500)                                            # the viewer's first frame decodes
    window.grab().save(str(artifacts_dir / "studio_stale_results.png"))
    capsys.readouterr()


def test_a_registered_stage_gets_a_command_status_and_staleness(tracked_project, copy_project, media_dir, capsys):
    """The tracked-blendshapes export is one file and one registry entry: the CLI, 'info' and staleness follow."""
    import numpy as np

    from core.expression.arkit_csv import ARKIT_NAMES
    from core.pipeline import STAGES
    from core.tracking.pose import euler_degrees
    from core.tracking.track import load_tracking

    load = STAGES["tracked_csv"].resolve("load")
    root = copy_project(tracked_project("katie_8s.mp4"))
    assert main(["info", "--project", str(root)]) == 0
    assert "tracked_csv: missing (the tracked blendshapes' CSV has not been made" in capsys.readouterr().out
    assert main(["export-tracked", "--project", str(root)]) == 0
    assert "tracked_blendshapes.csv" in capsys.readouterr().out
    project = Project.open(root)
    take, tracking = load(project), load_tracking(project)
    jaw = list(tracking["blendshape_names"]).index("jawOpen")
    assert len(take) == len(tracking["valid"])
    assert np.allclose(take.blendshapes[:, ARKIT_NAMES.index("JawOpen")], tracking["blendshapes"][:, jaw], atol=1e-6)
    assert np.allclose(take.head, np.radians(euler_degrees(tracking["rot"])), atol=1e-5)
    assert status(project)["tracked_csv"].current

    assert main(["export-tracked", "--project", str(root), "--no-head"]) == 0   # another config: made again
    assert not load(Project.open(root)).head.any()
    assert main(["ingest", str(media_dir / "may_13s.mp4"), "--project", str(root)]) == 0
    capsys.readouterr()
    assert main(["info", "--project", str(root)]) == 0
    assert "tracked_csv: stale (the tracked blendshapes' CSV was made from other footage" in capsys.readouterr().out
    assert main(["export-tracked", "--project", str(root)]) == 1
    assert "track the face again" in capsys.readouterr().err
