"""Keyframed expression and pose edits (issue "Expression studio"): the curves between keys, the edited track and
pose, the saved document with its undo history, and the edits reaching the CSV export and the dub."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.errors import ProjectError
from core.expression.edits import HISTORY_LIMIT, History, edited_performance, load_keys, save_keys
from core.expression.keyframes import Edits, Key, Lane, pose_rotation
from core.layout import KEYS_FILE
from core.project import Project
from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.pose import euler_degrees
from core.tracking.track import load_tracking

BROW = BLENDSHAPE_NAMES.index("browInnerUp")


def test_two_smooth_keys_ease_in_and_out_and_linear_and_hold_do_not():
    smooth = Lane((Key(10, 0.0), Key(20, 1.0)))
    c = smooth.curve(30)
    u = np.array([0.2, 0.5, 0.8])
    np.testing.assert_allclose(c[[12, 15, 18]], 3 * u**2 - 2 * u**3)       # flat at both ends: smoothstep
    assert (c[:11] == 0).all() and (c[20:] == 1).all()                     # held before the first, after the last
    linear = Lane((Key(10, 0.0, "linear"), Key(20, 1.0)))
    np.testing.assert_allclose(linear.curve(30)[[12, 15, 18]], u)
    hold = Lane((Key(10, 0.0, "hold"), Key(20, 1.0)))
    assert (hold.curve(30)[10:20] == 0).all() and hold.curve(30)[20] == 1


def test_smooth_keys_pass_through_their_values_without_overshoot():
    lane = Lane((Key(0, 0.0), Key(10, 0.5), Key(20, 1.0), Key(30, 0.2)))
    c = lane.curve(31)
    np.testing.assert_allclose(c[[0, 10, 20, 30]], [0.0, 0.5, 1.0, 0.2])
    assert c.max() <= 1.0 + 1e-12 and c.min() >= -1e-12                    # the peak at 20 is flat: no overshoot
    assert np.all(np.diff(c[:21]) >= -1e-12)                               # rising keys give a rising curve


def test_keys_are_set_moved_copied_and_removed():
    lane = Lane().with_key(5, 0.3).with_key(15, 0.6, "linear").with_key(5, 0.4)
    assert [(k.frame, k.value, k.interp) for k in lane.keys] == [(5, 0.4, "smooth"), (15, 0.6, "linear")]
    moved = lane.moved(15, 25)
    assert [k.frame for k in moved.keys] == [5, 25] and moved.keys[1].interp == "linear"
    assert [k.frame for k in lane.moved(5, 9, copy=True).keys] == [5, 9, 15]
    assert [k.frame for k in lane.moved(5, 15).keys] == [15] and lane.moved(5, 15).keys[0].value == 0.4
    assert lane.without_key(5).keys == (Key(15, 0.6, "linear"),)
    with pytest.raises(ValueError, match="interpolation"):
        Key(1, 0.0, "bezier-ish")
    with pytest.raises(ValueError, match="weight"):
        Lane((), 1.5)
    with pytest.raises(ValueError, match="no control named"):
        Edits({"browUp": Lane()})


def test_the_edit_is_an_offset_on_the_performance_weighted_and_clipped():
    performance = np.full((40, 52), 0.3, np.float32)
    edits = Edits().with_lane("browInnerUp", Lane((Key(10, 0.0), Key(20, 0.5), Key(30, 0.0))))
    out = edits.apply(performance)
    assert out[20, BROW] == pytest.approx(0.8) and out[5, BROW] == pytest.approx(0.3) and out[35, BROW] == 0.3
    others = np.delete(np.arange(52), BROW)
    np.testing.assert_array_equal(out[:, others], performance[:, others])  # one control, one column
    half = edits.with_lane("browInnerUp", Lane(edits.lane("browInnerUp").keys, 0.5))
    assert half.apply(performance)[20, BROW] == pytest.approx(0.55)
    assert Edits({"browInnerUp": Lane((Key(0, 0.9),))}).apply(performance)[0, BROW] == 1.0  # clipped to [0, 1]
    assert Edits().with_lane("browInnerUp", Lane()).empty                  # an emptied lane goes


def test_an_override_lane_replaces_the_performance_by_its_weight():
    performance = np.linspace(0, 1, 40, dtype=np.float32)[:, None].repeat(52, axis=1)     # [40,52] a rising track
    lane = Lane((Key(10, 0.2), Key(30, 0.2)), mode="override")
    out = Edits({"browInnerUp": lane}).apply(performance)
    np.testing.assert_allclose(out[:, BROW], 0.2)                          # held flat, the performance's rise gone
    half = Edits({"browInnerUp": Lane(lane.keys, 0.5, "override")}).apply(performance)
    np.testing.assert_allclose(half[:, BROW], 0.5 * performance[:, BROW] + 0.1, atol=1e-6)
    assert lane.key_for(0.7, 0.4) == pytest.approx(0.4) and Lane(weight=0.5).key_for(0.7, 0.4) == pytest.approx(-0.6)
    with pytest.raises(ValueError, match="mode"):
        Lane(mode="replace")
    assert Edits.from_dict(Edits({"browInnerUp": lane}).to_dict()) == Edits({"browInnerUp": lane})


def test_pose_offsets_turn_the_head_by_the_keyed_degrees():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-20, 20, (8, 3))
    rot = pose_rotation(angles)
    np.testing.assert_allclose(euler_degrees(rot), angles, atol=1e-4)     # the inverse of the curves' angles
    trans = rng.normal(size=(8, 3))
    edits = Edits({"yaw": Lane((Key(0, 10.0),)), "ty": Lane((Key(0, -0.5),))})
    rot2, trans2 = edits.pose(rot, trans)
    np.testing.assert_allclose(euler_degrees(rot2)[:, 0], angles[:, 0] + 10, atol=1e-4)
    np.testing.assert_allclose(euler_degrees(rot2)[:, 1:], angles[:, 1:], atol=1e-4)
    np.testing.assert_allclose(trans2, trans + [0, -0.5, 0])
    assert Edits({"browInnerUp": Lane((Key(0, 1.0),))}).pose(rot, trans)[0] is rot


def test_keys_and_their_undo_history_are_saved_and_read_back(tracked_project, copy_project):
    project = Project.open(copy_project(tracked_project("katie_8s.mp4")))
    a = Edits()
    b = a.with_lane("browInnerUp", Lane((Key(3, 0.2),)))
    c = b.with_lane("yaw", Lane((Key(7, -4.0, "hold"), Key(9, 2.0))))
    save_keys(project, History((a, b, c), ("Key browInnerUp", "Key yaw"), 1))
    history = load_keys(project)
    assert history.states == (a, b, c) and history.labels == ("Key browInnerUp", "Key yaw") and history.index == 1
    data = json.loads(project.path(KEYS_FILE).read_text())
    assert data["format"] == 1 and data["edits"] == b.to_dict()

    states = tuple(Edits({"browInnerUp": Lane((Key(0, i / 1000),))}) for i in range(HISTORY_LIMIT + 50))
    save_keys(project, History(states, tuple(f"step {i}" for i in range(len(states) - 1)), len(states) - 1))
    history = load_keys(project)
    assert len(history.labels) == HISTORY_LIMIT and history.states[history.index] == states[-1]


def test_a_damaged_keys_file_is_set_aside_and_named(tracked_project, copy_project):
    project = Project.open(copy_project(tracked_project("katie_8s.mp4")))
    project.path(KEYS_FILE).write_text('{"format": 1, "edits": {"lanes": {"browInnerUp": {"keys": [[1, "high", "smooth"]]}}}}')
    with pytest.raises(ProjectError, match="keyframed edits is damaged.*browInnerUp"):
        load_keys(project)
    assert not project.path(KEYS_FILE).exists() and project.path(f"{KEYS_FILE}.damaged").is_file()
    assert load_keys(project).states == (Edits(),)


def test_keys_reach_the_csv_export_and_clear_sets_them_aside(tracked_project, copy_project, tmp_path):
    root = copy_project(tracked_project("katie_8s.mp4"))
    project = Project.open(root)
    edits = Edits({"browInnerUp": Lane((Key(40, 0.0), Key(50, 0.4), Key(60, 0.0))), "yaw": Lane((Key(0, 5.0),))})
    save_keys(project, History.start(edits))
    tracking = load_tracking(project)
    edited = edited_performance(project, tracking)
    assert edited.posed and len(edited.notes) == 1
    out = tmp_path / "t.json"
    assert main(["expression", "--project", str(root), "--export", str(out)]) == 0
    data = json.loads(out.read_text())
    brow = np.array(data["blendshapes"])[:, data["names"].index("BrowInnerUp")]
    want = np.clip(tracking["blendshapes"][:, BROW] + edits.lane("browInnerUp").curve(200), 0, 1)
    np.testing.assert_allclose(brow, want, atol=1e-5)
    yaw = np.degrees(np.array(data["head"])[:, 0])
    np.testing.assert_allclose(yaw, euler_degrees(tracking["rot"])[:, 0] + 5, atol=1e-3)
    assert main(["expression", "--project", str(root), "--clear"]) == 0
    assert not project.path(KEYS_FILE).exists() and project.path(f"{KEYS_FILE}.cleared").is_file()
    assert not edited_performance(project, tracking).posed


@pytest.mark.slow
def test_a_dub_after_editing_shows_the_raised_brows_to_a_face_tracker(expressive_project, copy_project, media_dir,
                                                                      tmp_path):
    """The inner brows keyed up over footage frames 135-155 (ramps of 10 frames each side) and dubbed from frame 120:
    the face tracker reads them raised on the keyed span of the dub and as in the unedited dub elsewhere."""
    from core.dub import DubConfig, DubJob
    from core.jobs import run_job
    from core.media import FrameReader
    from core.tracking.landmarks import detect_landmarks

    project = Project.open(copy_project(expressive_project))
    config = DubConfig(end=2.4, source_start=120, watermark=False)          # 60 frames: footage 120-179
    raised = Edits({"browInnerUp": Lane((Key(125, 0.0), Key(135, 0.9), Key(155, 0.9), Key(165, 0.0)))})
    seen = {}
    for name, edits in (("plain", Edits()), ("edited", raised)):
        save_keys(project, History.start(edits))
        out = tmp_path / f"{name}.mp4"
        run_job(DubJob(project, media_dir / "speech_en_60s_16k.wav", out, config))
        with FrameReader(out) as reader:
            seen[name] = detect_landmarks(reader).blendshapes[:, BROW]
    rise = seen["edited"] - seen["plain"]                                   # [60]
    keyed, elsewhere = rise[15:36], rise[np.r_[0:3, 47:60]]                 # footage 135-155; before 123, after 166
    assert keyed.mean() > 0.15 and keyed.min() > 0.08, rise.round(3)
    assert np.abs(elsewhere).max() < 0.06, rise.round(3)


def test_the_stabilizer_strength_restabilizes_the_pose_from_the_kept_keypoints(tracked_project, copy_project):
    from core.expression.edits import RestabilizeJob
    from core.jobs import run_job
    from core.layout import KEYPOINTS_FILE, POSE_FILE

    project = Project.open(copy_project(tracked_project("may_13s.mp4")))
    tracking = load_tracking(project)
    assert project.path(KEYPOINTS_FILE).is_file()                            # kept by the tracking
    rot, trans = run_job(RestabilizeJob(project, tracking, 1.0))
    assert rot is tracking["rot"] and trans is tracking["trans"]             # 1: the tracking's own

    def jitter(r):
        return np.abs(np.diff(euler_degrees(r), 2, axis=0)).mean()          # mean |acceleration|, degrees

    steady, _ = run_job(RestabilizeJob(project, tracking, 4.0))
    loose, _ = run_job(RestabilizeJob(project, tracking, 0.0))
    assert jitter(steady) < jitter(tracking["rot"]) < jitter(loose)
    assert np.abs(euler_degrees(steady) - euler_degrees(tracking["rot"])).max() < 3   # still the head's motion
    assert project.path(POSE_FILE).is_file()
    again, _ = run_job(RestabilizeJob(project, tracking, 0.0))               # read back, not computed
    np.testing.assert_array_equal(again, loose)

    project.path(KEYPOINTS_FILE).unlink()                                    # tracked before they were kept
    project.path(POSE_FILE).unlink()
    found, _ = run_job(RestabilizeJob(project, tracking, 4.0))               # found again in the footage
    np.testing.assert_allclose(found, steady, atol=1e-5)

    save_keys(project, History.start(Edits(stabilizer=4.0)))
    edited = edited_performance(project, tracking)
    assert edited.posed and "stabilized at 4x" in edited.notes[0]
    np.testing.assert_allclose(edited.rot, steady, atol=1e-5)
