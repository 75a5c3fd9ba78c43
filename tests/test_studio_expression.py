"""The expression studio under Xvfb (issue "Expression studio"): sliders key their lanes and change the avatar in
context in their region only, undo restores the frame bit for bit, smooth keys give the expected in-betweens, pose
keys move the head, keys are dragged, copied, deleted and jumped between, and the edits and their undo history
survive quitting and reopening."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from core.compose.portrait import portrait_mask
from core.tracking.template import LIPS, NOSE_TIP
from core.project import Project
from core.tracking.track import load_tracking

pytestmark = pytest.mark.slow
FRAME = 140  # may_13s: the brows are down here (browInnerUp about 0.01), so raising them shows


def open_project(window, qtbot, root) -> None:
    assert window.open_project(root)
    qtbot.waitUntil(lambda: window.state.footage is not None and window.job is None
                    and window.state.edits.project is not None, timeout=30_000)


def composite(window, qtbot, previous=None):
    """The next avatar-in-context frame at the playhead made under the edits of now, the pose stabilized at their
    strength (after ``previous``)."""
    viewer, edits = window.viewer, window.state.edits
    qtbot.waitUntil(lambda: viewer.composite is not None and viewer.composite is not previous
                    and viewer.composite.index == window.state.frame and viewer.composite.edits == edits.edits
                    and viewer.composite.stabilizer == edits.edits.stabilizer, timeout=30_000)
    return viewer.composite


def changed(a, b, levels: int = 2) -> np.ndarray:
    """bool [H,W]: pixels that differ by more than ``levels`` in any channel."""
    return np.abs(a.picture.astype(int) - b.picture.astype(int)).max(axis=2) > levels


def test_a_core_slider_keys_its_lane_changes_the_brows_only_and_undo_restores_the_frame(
        window, qtbot, expressive_project, copy_project, artifacts_dir):
    root = copy_project(expressive_project)
    open_project(window, qtbot, root)
    window.state.set_frame(FRAME)
    window.viewer_actions["avatar"].trigger()
    assert window.viewer.mode == "avatar"
    before = composite(window, qtbot)
    assert not np.array_equal(before.picture, before.footage)  # the avatar is blended in

    window.docks["expression"].show()
    window.docks["expression"].raise_()
    row = window.panels["expression"].rows["browInnerUp"]
    row.slider.setValue(900)                                               # raise the inner brows to 0.9
    edits = window.state.edits
    key = edits.edits.lane("browInnerUp").key_at(FRAME)
    assert key is not None and edits.value("browInnerUp", FRAME) == pytest.approx(0.9)
    lanes = window.panels["timeline"].lanes
    assert "browInnerUp" in lanes.rows
    xs, ys = lanes.keys.getData()
    assert (FRAME, lanes.rows.index("browInnerUp")) in zip(xs, ys)         # a diamond on its lane
    assert row.key_button.text() == "◆" and edits.undo.count() == 1

    after = composite(window, qtbot, before)
    moved = changed(before, after)

    # The Viewport's orbit view follows the same edit: its avatar frames are made under it.
    from studio.panels.viewport import AvatarFrames

    viewport = window.panels["viewport"].avatar_source
    assert viewport.edits is edits.edits and viewport.performance is edits.performance
    frames = AvatarFrames(Project.open(root))
    plain = frames(FRAME).means.copy()
    frames.edits, frames.performance = edits.edits, edits.performance
    assert np.abs(frames(FRAME).means - plain).max() > 1e-3                 # the brows' Gaussians moved
    marks = load_tracking(Project.open(root))["landmarks"][FRAME]
    ys, _ = np.nonzero(moved)
    assert moved.sum() > 500                                               # the brows moved
    h, w = moved.shape
    whole = np.abs(after.picture.astype(int) - before.picture.astype(int)).max(axis=2) > 0
    assert not (whole & (portrait_mask(marks, (w, h)) == 0)).any()         # nothing outside the face's blend
    assert (ys < marks[NOSE_TIP, 1]).mean() > 0.9                          # the change is the brows' and eyes'
    assert not moved[int(marks[LIPS, 1].min()):].any()                     # the mouth is as it was

    # The face before and after, the split wipe, the panel and the lanes for a person to look at.
    x0, y0 = (marks.min(axis=0) - 20).astype(int).clip(0)
    x1, y1 = (marks.max(axis=0) + 20).astype(int)
    pair = np.concatenate([before.picture[y0:y1, x0:x1], after.picture[y0:y1, x0:x1]], axis=1)
    assert cv2.imwrite(str(artifacts_dir / "studio_expression_brows_before_after.png"), pair[..., ::-1])
    window.viewer_actions["split"].trigger()
    qtbot.wait(300)
    assert window.grab().save(str(artifacts_dir / "studio_expression_split.png"))
    window.viewer_actions["avatar"].trigger()

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert edits.edits.lane("browInnerUp").key_at(FRAME) is None and row.key_button.text() == "◇"
    undone = composite(window, qtbot, after)
    assert np.array_equal(undone.picture, before.picture)                  # bit for bit
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert edits.edits.lane("browInnerUp").key_at(FRAME) == key           # redone
    assert np.array_equal(composite(window, qtbot, undone).picture, after.picture)


def test_smooth_keys_give_the_expected_in_betweens_and_a_linear_key_does_not(
        window, qtbot, expressive_project, copy_project, artifacts_dir):
    open_project(window, qtbot, copy_project(expressive_project))
    edits = window.state.edits
    row = window.panels["expression"].rows["browOuterUpLeft"]
    window.state.set_frame(100)
    row.slider.setValue(200)
    window.state.set_frame(120)
    row.slider.setValue(700)
    assert edits.undo.count() == 2
    lane = edits.edits.lane("browOuterUpLeft")
    assert [k.frame for k in lane.keys] == [100, 120]
    assert [k.frame for k in edits.edits.lane("browOuterUpRight").keys] == [100, 120]   # Link L/R keys the pair
    assert edits.value("browOuterUpRight", 100) == pytest.approx(0.2)
    assert edits.value("browOuterUpRight", 120) == pytest.approx(0.7)
    o1, o2 = (k.value for k in lane.keys)
    for frame, u in ((105, 0.25), (110, 0.5), (115, 0.75)):
        want = np.clip(edits.tracked("browOuterUpLeft", frame) + o1 + (o2 - o1) * (3 * u**2 - 2 * u**3), 0, 1)
        window.state.set_frame(frame)
        assert edits.value("browOuterUpLeft", frame) == pytest.approx(want)
        assert row.value.text() == f"{want:.3f}"                           # what the slider shows
        assert row.slider.value() == round(want / 0.001)

    # The curve editor: select the first key, make it linear.
    curves = window.panels["curves"]
    window.docks["curves"].show()
    window.docks["curves"].raise_()
    edits.select_key(("browOuterUpLeft", 100))
    assert curves.channel_box.currentText() == "browOuterUpLeft" and curves.interp_box.isEnabled()
    curves.interp_box.setCurrentText("linear")
    curves.interp_box.activated.emit(curves.interp_box.currentIndex())
    want = np.clip(edits.tracked("browOuterUpLeft", 105) + o1 + (o2 - o1) * 0.25, 0, 1)
    assert edits.value("browOuterUpLeft", 105) == pytest.approx(want)
    base, edited = edits.curves("browOuterUpLeft")
    np.testing.assert_allclose(curves.edited_curve.getData()[1], edited)
    curves.mode_box.setCurrentText("override")                             # replace the performance instead
    curves.mode_box.activated.emit(curves.mode_box.currentIndex())
    assert edits.edits.lane("browOuterUpLeft").mode == "override"
    assert edits.value("browOuterUpLeft", 100) == pytest.approx(0.2) and edits.value("browOuterUpLeft", 120) == \
        pytest.approx(0.7)                                                 # the keys still show what was set
    np.testing.assert_allclose(edits.curves("browOuterUpLeft")[1][100:121], np.linspace(0.2, 0.7, 21), atol=1e-6)
    edits.undo.undo()
    curves.weight_box.setValue(0.5)                                        # fade the edit to half
    assert edits.value("browOuterUpLeft", 120) == pytest.approx(np.clip(base[120] + 0.5 * o2, 0, 1))
    qtbot.wait(200)
    assert window.grab().save(str(artifacts_dir / "studio_expression_curves.png"))


def test_pose_offset_keys_move_the_head_in_the_composite(window, qtbot, expressive_project, copy_project):
    open_project(window, qtbot, copy_project(expressive_project))
    window.state.set_frame(FRAME)
    window.viewer.set_mode("avatar")
    before = composite(window, qtbot)
    rows = window.panels["expression"].rows
    rows["yaw"].slider.setValue(80)                                        # +8 degrees
    assert window.state.edits.value("yaw", FRAME) == pytest.approx(8.0)
    turned = composite(window, qtbot, before)
    assert changed(before, turned).sum() > 5000                            # the whole face moved
    rows["ty"].slider.setValue(-100)                                       # and 1 cm up
    raised = composite(window, qtbot, turned)
    rows_changed = np.nonzero(changed(turned, raised).any(axis=1))[0]
    assert len(rows_changed) > 50
    window.state.edits.undo.undo()
    window.state.edits.undo.undo()
    assert np.array_equal(composite(window, qtbot, raised).picture, before.picture)


def test_the_stabilizer_strength_reruns_in_a_job_and_moves_the_composited_head(window, qtbot, expressive_project,
                                                                               copy_project):
    open_project(window, qtbot, copy_project(expressive_project))
    edits = window.state.edits
    window.state.set_frame(FRAME)
    window.viewer.set_mode("avatar")
    before = composite(window, qtbot)
    tracked = edits.angles.copy()
    window.panels["expression"].stabilizer.setValue(0)                    # no smoothing: the raw fit's jitter
    assert edits.edits.stabilizer == 0.0
    qtbot.waitUntil(lambda: edits.stabilizer == 0.0 and window.job is None, timeout=30_000)
    assert np.abs(edits.angles - tracked).max() > 0.1                     # the pose the curves show moved
    loose = composite(window, qtbot, before)
    assert changed(before, loose).sum() > 0
    edits.undo.undo()                                                      # 1x again: no job, the tracking's pose
    assert edits.stabilizer == 1.0 and window.job is None
    assert np.array_equal(composite(window, qtbot, loose).picture, before.picture)


def _drag(view, points, mods=Qt.KeyboardModifier.NoModifier, qtbot=None) -> None:
    kinds = [QEvent.Type.MouseButtonPress] + [QEvent.Type.MouseMove] * (len(points) - 2) + \
            [QEvent.Type.MouseButtonRelease]
    for kind, p in zip(kinds, points):
        held = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else Qt.MouseButton.LeftButton
        QApplication.sendEvent(view.viewport(), QMouseEvent(kind, QPointF(p), QPointF(view.mapToGlobal(p)),
                                                            Qt.MouseButton.LeftButton, held, mods))
        qtbot.wait(10)


def test_keys_are_dragged_copied_deleted_and_jumped_between(window, qtbot, expressive_project, copy_project,
                                                           artifacts_dir):
    open_project(window, qtbot, copy_project(expressive_project))
    edits = window.state.edits
    window.state.set_frame(100)
    window.panels["expression"].rows["browInnerUp"].slider.setValue(600)
    lanes = window.panels["timeline"].lanes
    row = lanes.rows.index("browInnerUp")
    vb = lanes.getPlotItem().vb

    def at(frame: float):
        return lanes.mapFromScene(vb.mapViewToScene(QPointF(frame, row)))

    _drag(lanes, [at(x) for x in np.linspace(100, 160, 8)], qtbot=qtbot)   # move the key to 160
    frames = [k.frame for k in edits.edits.lane("browInnerUp").keys]
    assert len(frames) == 1 and 155 <= frames[0] <= 165 and edits.undo.count() == 2   # one step for the drag
    moved_to = frames[0]
    _drag(lanes, [at(x) for x in np.linspace(moved_to, 60, 8)], Qt.KeyboardModifier.AltModifier, qtbot)  # copy
    frames = [k.frame for k in edits.edits.lane("browInnerUp").keys]
    assert len(frames) == 2 and frames[1] == moved_to and 55 <= frames[0] <= 65 and edits.undo.count() == 3
    assert edits.selected_key == ("browInnerUp", frames[0])
    qtbot.wait(100)
    assert window.panels["timeline"].grab().save(str(artifacts_dir / "studio_expression_lanes.png"))

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.state.set_frame(0)
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)                        # ] the next key
    assert window.state.frame == frames[0]
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert window.state.frame == frames[1]
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)                         # [ the previous one
    assert window.state.frame == frames[0]
    qtbot.keyClick(window, Qt.Key.Key_Delete)                              # the selected key goes
    assert [k.frame for k in edits.edits.lane("browInnerUp").keys] == [frames[1]]

    window.state.set_frame(200)
    qtbot.keyClick(window, Qt.Key.Key_K)                                   # K: a key where the curve is
    lane = edits.edits.lane("browInnerUp")
    assert lane.key_at(200) is not None and lane.key_at(200).value == pytest.approx(lane.key_at(frames[1]).value)
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ShiftModifier)  # Shift+K removes it
    assert edits.edits.lane("browInnerUp").key_at(200) is None
    window.state.set_frame(10)
    qtbot.keyClick(window, Qt.Key.Key_Space)                               # playing: K stops and keys nothing
    assert window.state.playing
    qtbot.keyClick(window, Qt.Key.Key_K)
    assert not window.state.playing and len(edits.edits.lane("browInnerUp").keys) == 1


def test_edits_and_their_undo_history_survive_quitting_and_reopening(qtbot, qapp, expressive_project,
                                                                     copy_project, tmp_path):
    from studio.main_window import MainWindow

    root = copy_project(expressive_project)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)

    def new_window() -> MainWindow:
        w = MainWindow(settings)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        open_project(w, qtbot, root)
        return w

    first = new_window()
    rows = first.panels["expression"].rows
    first.state.set_frame(50)
    rows["eyeBlinkLeft"].slider.setValue(800)
    rows["pitch"].slider.setValue(-50)
    rows["mouthSmileLeft"].slider.setValue(500)
    first.state.edits.undo.undo()                                          # the smile is undone, not gone
    kept = first.state.edits.edits
    first.close()                                                          # saves as the project closes

    second = new_window()
    edits = second.state.edits
    assert edits.edits == kept and edits.undo.count() == 3 and edits.undo.index() == 2
    assert edits.undo.undoText() == "Key pitch"
    edits.undo.redo()
    assert edits.edits.lane("mouthSmileLeft").key_at(50) is not None       # the redo survived too
    second.state.set_frame(50)
    assert second.panels["expression"].rows["eyeBlinkLeft"].slider.value() == 800
    second.close()


def test_the_timeline_frames_new_footage_whole(window, qtbot, tracked_project, copy_project):
    open_project(window, qtbot, copy_project(tracked_project("katie_8s.mp4")))
    window.viewer.set_mode("split")                                        # no avatar yet: the Viewer says so
    assert window.viewer.composite_error.startswith("No avatar to show: train one")
    assert not window.viewer.composited()                                  # the footage stays on screen
    vb = window.panels["timeline"].plot.getPlotItem().vb
    vb.setXRange(20, 40, padding=0)                                        # zoomed in
    open_project(window, qtbot, copy_project(tracked_project("may_13s.mp4")))
    qtbot.waitUntil(lambda: window.state.frame_count == 331)
    low, high = vb.viewRange()[0]
    assert low <= 0 and high >= 330                                        # the whole of the longer clip


def test_generate_from_speech_fills_a_range_of_the_core_controls_in_one_undo_step(window, qtbot, expressive_project,
                                                                                 copy_project, artifacts_dir):
    from core.expression.generator import GeneratorConfig, for_speech
    from core.media import load_audio
    from core.tracking.landmarks import EXPRESSION_BLENDSHAPES

    root = copy_project(expressive_project)
    open_project(window, qtbot, root)
    edits = window.state.edits
    panel = window.panels["expression"]
    window.docks["expression"].show()
    window.docks["expression"].raise_()
    before = {name: [edits.value(name, f) for f in (0, 49, 151, 200)] for name in EXPRESSION_BLENDSHAPES}
    dialog = panel.generate_dialog()
    assert (dialog.first.value(), dialog.last.value()) == (0, 330) and dialog.config() == GeneratorConfig()
    dialog.first.setValue(50)
    dialog.last.setValue(150)
    dialog.seed.setValue(2)
    dialog.rate.setValue(30)
    assert dialog.in_range.isChecked()
    dialog.in_range.setChecked(False)                                      # the generator's own track, compared below
    qtbot.wait(100)
    assert dialog.grab().save(str(artifacts_dir / "studio_expression_generate_dialog.png"))
    dialog.accept()
    qtbot.waitUntil(lambda: window.job is None and edits.undo.count() == 1, timeout=60_000)
    assert edits.undo.undoText() == "Generate brows and blinks"

    project = Project.open(root)
    tracking = load_tracking(project)
    want = for_speech(load_audio(root / "audio_16k.wav", 16000), tracking, 331, 25,
                      GeneratorConfig(seed=2, blink_rate=30.0))
    for j, name in enumerate(EXPRESSION_BLENDSHAPES):
        lane = edits.edits.lane(name)
        assert [k.frame for k in lane.keys] == list(range(49, 152))            # the range, and one either side
        assert all(edits.value(name, f) == pytest.approx(want[f, j], abs=1e-5) for f in (50, 99, 150))
        assert [edits.value(name, f) for f in (0, 49, 151, 200)] == pytest.approx(before[name])  # the rest as was
    window.docks["curves"].show()
    window.docks["curves"].raise_()
    edits.select("eyeBlinkLeft")
    window.state.set_frame(100)
    qtbot.wait(300)
    assert window.grab().save(str(artifacts_dir / "studio_expression_generated.png"))
    edits.undo.undo()
    assert edits.edits.empty


def test_expressions_export_and_come_back_through_the_file_menu_kept_in_the_subjects_range(
        window, qtbot, tracked_project, copy_project, tmp_path, artifacts_dir):
    """File ▸ Export Expressions writes the track; an edited copy (inner brows held at 1 over 2 s) comes back by
    File ▸ Import Expressions, asked with "Keep expressions in the subject's range" on: the performance under the
    keys changes over the take's frames, the brows rebuilt into the range Katie's own take gives, the mouth as
    imported; a second import sets the first take aside."""
    from core.expression.arkit_csv import ARKIT_NAMES, read_csv, write_csv
    from core.layout import EDITS_FILE
    from core.tracking.landmarks import BLENDSHAPE_NAMES

    root = copy_project(tracked_project("katie_8s.mp4"))
    open_project(window, qtbot, root)
    assert window.import_expressions_action.isEnabled() and window.export_expressions_action.isEnabled()
    out = tmp_path / "katie.csv"
    window.export_expressions(out)
    qtbot.waitUntil(lambda: window.job is None and out.is_file(), timeout=20_000)
    take = read_csv(out)
    brow, jaw = ARKIT_NAMES.index("BrowInnerUp"), ARKIT_NAMES.index("JawOpen")
    values = take.blendshapes.copy()
    values[:50, brow] = 1.0
    values[:50, jaw] = 0.6
    edited = tmp_path / "brows_up.csv"
    write_csv(edited, values, 25)

    edits = window.state.edits
    box = window.confirm_import_expressions(edited)
    assert box.checkBox().isChecked()
    qtbot.wait(100)
    assert box.grab().save(str(artifacts_dir / "studio_import_expressions.png"))
    next(b for b in box.buttons() if b.text() == "Import").click()
    qtbot.waitUntil(lambda: window.job is None and (root / EDITS_FILE).is_file(), timeout=60_000)
    qtbot.waitUntil(lambda: edits.performance is not None
                    and edits.performance[:50, BLENDSHAPE_NAMES.index("jawOpen")].min() > 0.59, timeout=10_000)
    tracked = load_tracking(Project.open(root))["blendshapes"]
    b = BLENDSHAPE_NAMES.index("browInnerUp")
    kept = edits.performance[:50, b]
    assert kept.mean() < 0.9 and kept.max() <= tracked[:, b].max() + 0.05     # pulled into Katie's range
    assert np.abs(edits.performance[70:, b] - tracked[70:, b].clip(0, 1)).mean() < 0.05  # the rest: her own

    window.import_expressions(edited, keep_in_range=False)
    qtbot.waitUntil(lambda: window.job is None and edits.performance[:50, b].min() > 0.99, timeout=60_000)
    assert (root / (EDITS_FILE + ".replaced")).is_file()
