"""Dubbing in the studio: the Export dialog checks its inputs before Export is offered, the dub runs as a job with
its progress in the status bar, the result shows in the Viewer in place of the footage (and the footage comes
back), and a cancelled dub leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from core.dub import DubConfig
from core.ingest import IngestJob
from core.jobs import run_job
from core.media import FrameReader, VideoWriter, probe
from core.project import Project
from studio.panels.export import ExportDialog
from studio.state import DubForViewJob

pytestmark = pytest.mark.gui


@pytest.fixture
def imported(media_dir, tmp_path) -> Project:
    """A project with may_13s.mp4 imported (a tenth of a second): enough for the dialog, which reads its footage."""
    project = Project.create(tmp_path / "may")
    run_job(IngestJob(project, media_dir / "may_13s.mp4"))
    return project


@pytest.fixture
def dialog(qtbot, imported, tmp_path) -> ExportDialog:
    d = ExportDialog(imported, tmp_path, tmp_path)
    qtbot.addWidget(d)
    d.show()
    return d


@pytest.fixture
def studio(window, qtbot, trained_project, copy_project):
    """The studio with a fresh copy of a project whose (tiny) avatar is trained."""
    assert window.open_project(copy_project(trained_project("may_13s.mp4"), "may"))
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    return window


def test_the_dialog_offers_export_only_for_a_usable_speech_file(dialog, imported, media_dir, tmp_path):
    assert not dialog.export_button.isEnabled() and dialog.speech_label.text().startswith("Choose the speech")
    assert not dialog.start_box.isEnabled() and not dialog.end_box.isEnabled()
    assert dialog.output_path() == imported.root / "may_dub.mp4"
    assert [dialog.size_box.itemText(i) for i in range(3)] == ["Source (512×512)", "512 px high (512×512)",
                                                               "1080p (1080×1080)"]
    assert [dialog.quality_box.itemText(i) for i in range(3)] == ["High", "Medium", "Small file"]
    assert dialog.watermark_box.isChecked() and "metadata always" in dialog.watermark_box.toolTip()

    # Not media: said beside the field, and no export.
    notes = tmp_path / "notes.wav"
    notes.write_text("not a sound")
    dialog.set_speech(notes)
    assert dialog.speech_label.text().startswith("notes.wav is not a media file")
    assert not dialog.export_button.isEnabled()

    # A video without sound: no speech in it.
    silent = tmp_path / "silent.mp4"
    with VideoWriter(silent, 25, (64, 64)) as video:
        for _ in range(3):
            video.write(np.zeros((64, 64, 3), np.uint8))
    dialog.set_speech(silent)
    assert "has no audio track" in dialog.speech_label.text() and "silent" in dialog.speech_label.text()
    assert not dialog.export_button.isEnabled()

    # A speech file: its duration is shown and the range spans it all.
    speech = media_dir / "speech_en_60s_16k.wav"
    dialog.set_speech(speech)
    assert dialog.speech_label.text() == "60.00 s of speech"
    assert dialog.end_box.value() == dialog.end_box.maximum() == 60.0 and dialog.start_box.value() == 0.0
    assert dialog.range_label.text() == "1500 frames" and dialog.export_button.isEnabled()
    dialog.size_box.setCurrentIndex(2)
    dialog.quality_box.setCurrentIndex(1)
    dialog.watermark_box.setChecked(False)
    dialog.start_box.setValue(2.0)
    dialog.end_box.setValue(3.0)
    assert dialog.config() == DubConfig(start=2.0, end=3.0, size="1080p", crf=23, watermark=False)
    assert [dialog.face_box.itemData(i) for i in range(3)] == ["edited", "footage", "generated"]
    dialog.face_box.setCurrentIndex(2)
    assert dialog.config().expression == "generated"
    dialog.face_box.setCurrentIndex(0)
    job = dialog.job()
    assert (job.project, job.audio, job.out) == (imported, speech, imported.root / "may_dub.mp4")

    # An empty range, then outputs that cannot be written: each disables Export with its reason.
    dialog.end_box.setValue(2.0)
    assert dialog.range_label.text() == "an empty range" and not dialog.export_button.isEnabled()
    dialog.end_box.setValue(3.0)
    assert dialog.export_button.isEnabled()
    for out, reason in ((tmp_path / "dub.mov", "is not an .mp4 name"), (tmp_path / "nowhere" / "dub.mp4",
                        "does not exist"), (Path(imported.footage.path), "one of the dub's inputs")):
        dialog.set_output(out)
        assert reason in dialog.output_label.text() and not dialog.export_button.isEnabled(), out
    dialog.set_output(tmp_path / "dub.mp4")
    assert dialog.output_label.text() == "" and dialog.export_button.isEnabled()


def test_export_needs_a_trained_avatar(window, qtbot, imported):
    assert not window.export_action.isEnabled() and window.export_dialog() is None
    assert window.open_project(imported.root)
    qtbot.waitUntil(lambda: window.job is None and window.state.footage is not None, timeout=20_000)
    assert not window.export_action.isEnabled() and window.export_dialog() is None
    assert not window.project_footage_action.isEnabled()


@pytest.mark.slow
def test_export_runs_as_a_job_and_the_dub_shows_in_the_viewer(studio, qtbot, media_dir, tmp_path, artifacts_dir):
    window, state = studio, studio.state
    assert window.export_action.isEnabled() and not window.project_footage_action.isEnabled()
    state.set_frame(100)
    dialog = window.export_dialog()
    assert dialog is not None and dialog.isVisible()
    speech, out = media_dir / "speech_en_60s_16k.wav", tmp_path / "dubs" / "may_dub.mp4"
    out.parent.mkdir()
    dialog.set_speech(speech)
    dialog.end_box.setValue(1.0)
    dialog.set_output(out)
    assert dialog.range_label.text() == "25 frames" and dialog.export_button.isEnabled()
    qtbot.wait(100)
    dialog.grab().save(str(artifacts_dir / "studio_export_dialog.png"))

    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    worker = window.job
    assert isinstance(worker.job, DubForViewJob) and worker.job.dub.out == out
    assert window.cancel_button.isVisible() and not window.export_action.isEnabled()
    messages: list[str] = []
    worker.progress.connect(lambda _f, message: messages.append(message))
    qtbot.waitUntil(lambda: window.job is None, timeout=300_000)
    assert window.last_error is None
    assert any(m.startswith("Frame ") and "fps" in m for m in messages), messages

    info = probe(out)
    assert info.frame_count == 25 and info.fps == 25 and info.has_audio
    # The Viewer shows the dub in place of the footage; the project and its tracking stay.
    assert state.preview == out and state.footage.reader.path == out and state.frame_count == 25
    assert state.project.footage.path.endswith("may_13s.mp4") and state.tracking is not None
    assert state.frame == 0 and window.panels["timeline"].cursor.value() == 0
    qtbot.waitUntil(lambda: window.viewer.shown_index == 0, timeout=10_000)
    with FrameReader(out) as reader:
        assert np.array_equal(window.viewer.shown_frame, reader.read(0))
    assert window.statusBar().currentMessage().startswith(f"Exported {out} — 25 frames (1.0 s)")
    assert window.project_footage_action.isEnabled() and window.export_action.isEnabled()
    assert window.settings.value("dirs/speech") == str(media_dir)
    assert window.settings.value("dirs/dub") == str(out.parent)
    window.state.set_frame(12)
    qtbot.waitUntil(lambda: window.viewer.shown_index == 12, timeout=10_000)
    qtbot.wait(100)
    window.grab().save(str(artifacts_dir / "studio_export.png"))

    # Saving keeps the footage's playhead, not the dub's; Show Project Footage brings the footage back there.
    window.save_project()
    assert Project.open(state.project.root).view["frame"] == 100
    window.project_footage_action.trigger()
    qtbot.waitUntil(lambda: window.job is None and state.preview is None and state.footage is not None,
                    timeout=20_000)
    assert state.frame_count == 331 and state.frame == 100 and state.tracking is not None
    assert not window.project_footage_action.isEnabled()

    # The folders are remembered: the next dialog's file pickers start there.
    again = window.export_dialog()
    assert again.speech_dir == media_dir and again.output_dir == out.parent
    again.reject()


@pytest.mark.slow
def test_cancelling_a_dub_leaves_no_file(studio, qtbot, media_dir, tmp_path):
    window = studio
    out = tmp_path / "dubs" / "long.mp4"
    out.parent.mkdir()
    dialog = window.export_dialog()
    dialog.set_speech(media_dir / "speech_en_60s_16k.wav")  # all of it: 1500 frames, minutes
    dialog.set_output(out)
    dialog.accept()
    worker = window.job
    assert worker is not None
    frames: list[dict] = []
    worker.metrics.connect(frames.append)
    qtbot.waitUntil(lambda: len(frames) >= 2, timeout=120_000)
    assert list(out.parent.glob("*.part"))                      # the dub is written beside its target
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.job is None, timeout=60_000)
    assert window.last_error is None and "cancelled" in window.statusBar().currentMessage()
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert window.state.preview is None and window.state.frame_count == 331
