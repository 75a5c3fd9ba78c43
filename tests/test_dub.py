"""Dubbing: new speech over the footage, ping-pong past its end, an invisible seam, provenance, bad input."""

from __future__ import annotations

import errno
import io
import itertools
import json
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.compose.portrait import PortraitConfig, portrait_mask
from core.dub import DubConfig, DubJob, in_order, output_size, pingpong
from core.errors import MediaError
from core.expression.edits import save_take
from core.jobs import Cancelled, CancelToken, run_job
from core.media import FrameReader, load_audio, probe
from core.metrics import seam_errors
from core.project import Project
from core.tracking.track import load_tracking


def test_frames_played_backward_are_decoded_forward_a_block_at_a_time():
    class Reader:  # records the order frames are decoded in
        def __init__(self):
            self.reads = []

        def read(self, i):
            self.reads.append(i)
            return np.full((2, 2, 3), i, np.uint8)

    reader, source = Reader(), pingpong(np.arange(40), 10).tolist()     # 0..9, 8..0, 1..9, 8..0, 1..3
    got = list(in_order(reader, source, block=4))
    assert [s for s, _ in got] == source and all((f == s).all() for s, f in got)
    assert reader.reads[:9] == list(range(9))                           # forward: as played
    assert reader.reads[9:17] == [6, 7, 8, 9, 2, 3, 4, 5]               # 9..2 backward: each block read forward
    assert len(reader.reads) == len(source)                             # no frame decoded twice


def test_pingpong_runs_forward_and_back_without_repeating_a_frame():
    k = np.arange(20)
    assert pingpong(k, 5).tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert (np.abs(np.diff(pingpong(np.arange(1000), 331))) == 1).all()   # never a jump, never a repeat
    assert pingpong(k, 1).tolist() == [0] * 20
    assert pingpong(7, 5) == 1


def test_output_size_keeps_the_aspect_and_even_sides():
    assert output_size((512, 512), "source") == (512, 512)
    assert output_size((1920, 1080), "512") == (910, 512)
    assert output_size((720, 1280), "1080p") == (608, 1080)
    assert output_size((641, 481), "source") == (640, 480)
    with pytest.raises(ValueError, match="'4k' is not one of source, 512, 1080p"):
        DubConfig(size="4k")
    with pytest.raises(ValueError, match="is empty"):
        DubConfig(start=3, end=2)


def _frames(path: Path) -> list[np.ndarray]:
    with FrameReader(path) as reader:
        return list(reader)


@pytest.mark.slow
def test_dub_of_60_s_speech_runs_the_footage_back_and_forth(trained_project, copy_project, media_dir, tmp_path):
    """60 s of speech over 13 s of footage: 1500 frames at 25 fps of 512², the speech as its audio, no
    repeated frame at the turns, and metadata that says the video is synthetic."""
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    speech = media_dir / "speech_en_60s_16k.wav"
    out = tmp_path / "dub.mp4"
    reports = []
    result = run_job(DubJob(project, speech, out), reports.append)
    assert result.frames == 1500 and result.seconds == 60.0 and result.notes == []
    assert any("fps" in p.message and "left" in p.message for p in reports)

    info = probe(out)
    assert (info.width, info.height, info.fps, info.frame_count) == (512, 512, 25, 1500)
    assert abs(info.audio[0].duration - 60.0) < 0.05

    # The decoded audio is the speech (AAC delays and smooths it a little: align, then correlate).
    heard, said = load_audio(out), load_audio(speech)
    n = min(len(heard), len(said)) - 4096
    lags = range(-2048, 2049, 1)
    best = max(lags, key=lambda lag: float(np.dot(heard[2048 + lag:2048 + lag + n // 4], said[2048:2048 + n // 4])))
    r = np.corrcoef(heard[2048 + best:2048 + best + n], said[2048:2048 + n])[0, 1]
    assert r >= 0.99, r

    # Consecutive frames always differ, at the ping-pong turns (after frames 330, 660, ...) too.
    frames = _frames(out)
    assert len(frames) == 1500
    diffs = np.array([np.abs(a.astype(np.int16) - b).mean() for a, b in itertools.pairwise(frames)])
    assert diffs.min() > 0.05, np.argsort(diffs)[:5]
    for turn in (330, 660, 990, 1320):
        assert diffs[turn - 1] > 0.05 and diffs[turn] > 0.05

    with av.open(str(out)) as c:
        meta = c.metadata
    assert meta["synthetic"] == "true" and "Avatar Studio" in meta["comment"]
    assert json.loads(meta["avatar_studio"])["speech"] == "speech_en_60s_16k.wav"


def _seam_ratio(project: Project, out: Path, config: PortraitConfig) -> float:
    """core.metrics.seam_errors over the dub's frames: ring over background, about 1 for encoding alone."""
    tracking = load_tracking(project)
    errors = []
    with FrameReader(project.checked_footage().path) as source:
        for k, dubbed in enumerate(_frames(out)):
            s = int(pingpong(k, len(source)))
            real = source.read(s)
            blend = portrait_mask(tracking["landmarks"][s], (real.shape[1], real.shape[0]), config)
            errors.append(seam_errors(dubbed, real, blend))
    ring, background = np.mean(errors, axis=0)
    return float(ring / background)


@pytest.mark.slow
def test_the_seam_is_invisible_and_a_hard_edge_is_not(trained_project, copy_project, media_dir, tmp_path):
    """At the feathered mask's edge the dub differs from the footage no more than encoding does elsewhere; the
    same measure catches a hard-edged paste (the test's control)."""
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    speech = media_dir / "speech_en_60s_16k.wav"
    soft = DubConfig(end=2.0, watermark=False)
    run_job(DubJob(project, speech, tmp_path / "soft.mp4", soft))
    hard = DubConfig(end=2.0, watermark=False, portrait=PortraitConfig(feather=0.0, blur=0.0, color_match=False))
    run_job(DubJob(project, speech, tmp_path / "hard.mp4", hard))
    assert _seam_ratio(project, tmp_path / "soft.mp4", soft.portrait) <= 2.0
    assert _seam_ratio(project, tmp_path / "hard.mp4", hard.portrait) > 2.0


@pytest.mark.slow
def test_watermark_size_range_and_a_video_as_speech(trained_project, copy_project, media_dir, tmp_path):
    """katie_8s.mp4 given as the speech: its audio track is used and the notes say so; 1.0-1.4 s of it at
    1080p gives 10 frames of 1080²; the watermark marks the bottom-right corner only."""
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    video = media_dir / "katie_8s.mp4"
    marked, plain = tmp_path / "marked.mp4", tmp_path / "plain.mp4"
    result = run_job(DubJob(project, video, marked, DubConfig(start=1.0, end=1.4, size="1080p")))
    assert result.frames == 10 and result.notes == ["katie_8s.mp4 is a video: its audio track is used"]
    run_job(DubJob(project, video, plain, DubConfig(start=1.0, end=1.4, size="1080p", watermark=False)))
    a, b = _frames(marked)[5], _frames(plain)[5]
    assert a.shape == (1080, 1080, 3)
    changed = np.abs(a.astype(np.int16) - b).max(axis=2) > 40                      # [H,W]
    ys, xs = np.nonzero(changed)
    assert len(ys) > 500 and ys.min() > 1080 * 0.9 and xs.min() > 1080 * 0.3
    heard = load_audio(plain)
    assert abs(len(heard) / 16000 - 0.4) < 0.01


def test_edited_expressions_drive_the_upper_face(trained_project, copy_project, media_dir, tmp_path, monkeypatch):
    from core.avatar.drive import Driver
    from core.avatar.views import expression

    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    tracking = load_tracking(project)
    edited = tracking["blendshapes"].copy()
    names = [str(n) for n in tracking["blendshape_names"]]
    edited[:, names.index("eyeBlinkLeft")] = edited[:, names.index("eyeBlinkRight")] = 1.0   # eyes shut
    save_take(project, edited)
    seen = []
    real_frame = Driver.frame
    monkeypatch.setattr(Driver, "frame", lambda self, f, s, a, e, pose=None:
                        seen.append((s, e)) or real_frame(self, f, s, a, e, pose))
    result = run_job(DubJob(project, media_dir / "speech_en_60s_16k.wav", tmp_path / "d.mp4", DubConfig(end=0.2)))
    assert result.notes == ["the upper face follows the project's imported expression take"]
    want = expression({"blendshapes": edited, "blendshape_names": tracking["blendshape_names"]})
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4]
    for s, e in seen:
        np.testing.assert_array_equal(e, want[s])


# --- bad input: a clear error, and nothing left at the output path --------------------------------------------
def _nothing_left(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.suffix in (".mp4", ".part")] == []


def test_bad_speech_files_are_named(trained_project, copy_project, tmp_path):
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    with pytest.raises(MediaError, match="empty.wav: has no audio samples"):
        run_job(DubJob(project, empty, out / "a.mp4"))
    text = tmp_path / "notes.mp3"
    text.write_text("not a sound\n" * 100)
    with pytest.raises(MediaError, match="notes.mp3: is not a media file"):
        run_job(DubJob(project, text, out / "b.mp4"))
    with pytest.raises(MediaError, match="missing.wav: file not found"):
        run_job(DubJob(project, tmp_path / "missing.wav", out / "c.mp4"))
    _nothing_left(out)


def test_bad_output_paths_are_named(trained_project, copy_project, media_dir, tmp_path):
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    speech = media_dir / "speech_en_60s_16k.wav"
    with pytest.raises(MediaError, match="cannot be written: the folder .*nowhere does not exist"):
        run_job(DubJob(project, speech, tmp_path / "nowhere" / "dub.mp4"))
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(MediaError, match="is not an .mp4 name"):
        run_job(DubJob(project, speech, tmp_path / "dub.mov"))


class _FullDisk(io.FileIO):
    """A file whose disk fills up after ``limit`` bytes."""

    def __init__(self, path: str, limit: int):
        super().__init__(path, "w+b")
        self.limit = limit

    def write(self, data) -> int:
        if self.tell() + len(data) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_full_disk_and_a_cancel_leave_no_file(trained_project, copy_project, media_dir, tmp_path, monkeypatch):
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    speech = media_dir / "speech_en_60s_16k.wav"
    out = tmp_path / "out"
    out.mkdir()
    real_open = av.open
    monkeypatch.setattr("core.media.writer.av.open",
                        lambda file, mode="r", **kw: real_open(_FullDisk(file, 60_000) if mode == "w" else file,
                                                               mode, **kw))
    with pytest.raises(MediaError, match="dub.mp4: cannot be written \\(No space left on device\\)"):
        run_job(DubJob(project, speech, out / "dub.mp4", DubConfig(end=4.0)))
    _nothing_left(out)
    monkeypatch.undo()

    token = CancelToken()
    with pytest.raises(Cancelled):
        run_job(DubJob(project, speech, out / "dub.mp4", DubConfig(end=4.0)),
                lambda p: p.metrics and p.metrics["frame"] >= 10 and token.cancel(), token)
    _nothing_left(out)


def test_generated_expressions_drive_the_upper_face_the_same_for_a_seed(trained_project, copy_project, media_dir,
                                                                       tmp_path, monkeypatch):
    from core.avatar.drive import Driver
    from core.expression.generator import GeneratorConfig, for_speech
    from core.jobs import CancelToken
    from core.media import load_audio

    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    speech = media_dir / "speech_en_60s_16k.wav"
    seen = []
    real_frame = Driver.frame
    monkeypatch.setattr(Driver, "frame", lambda self, f, s, a, e, pose=None:
                        seen.append(e) or real_frame(self, f, s, a, e, pose))
    result = run_job(DubJob(project, speech, tmp_path / "g.mp4", DubConfig(end=2.0, expression="generated",
                                                                         keep_in_range=False)))
    assert any("generated from speech_en_60s_16k.wav (seed 0)" in note for note in result.notes)
    want = for_speech(load_audio(speech, 16000, duration=2.0), load_tracking(project), 50, Fraction(25),
                      GeneratorConfig(seed=0), CancelToken())
    np.testing.assert_array_equal(np.array(seen), want)
    other = for_speech(load_audio(speech, 16000, duration=2.0), load_tracking(project), 50, Fraction(25),
                       GeneratorConfig(seed=1), CancelToken())
    assert not np.array_equal(other, want)
    looped = load_tracking(project)["blendshapes"][:50, 1:6]                # the footage's brows, as a loop shows them
    assert not np.allclose(want[:, :5], looped)
