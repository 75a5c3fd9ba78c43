"""The Torso Restorer's stage (issue "SyncTalk++'s two remaining modules"): it resumes after a kill from its last
checkpoint, is marked stale when the footage changes, and leaves every pixel outside its band as it was."""

from __future__ import annotations

import numpy as np
import pytest

from core.avatar.torso import LowerFaceCache, TorsoConfig, TorsoJob, load_torso, restore, sample
from core.errors import ProjectError
from core.ingest import IngestJob
from core.jobs import CancelToken, Cancelled, run_job
from core.layout import TORSO_CHECKPOINT_FILE, TORSO_FILE
from core.media import FrameReader
from core.pipeline import status
from core.project import Project
from core.tracking.track import load_tracking

SMALL = TorsoConfig(steps=6, batch=1, width=4, checkpoint_every=2)


class Killed(Exception):
    """Stands for the process dying mid-run: nothing after it runs, no checkpoint is written for it."""


def test_the_restorer_resumes_after_a_kill_and_goes_stale_with_other_footage(tracked_project, copy_project,
                                                                            media_dir):
    project = Project.open(copy_project(tracked_project("katie_8s.mp4")))

    def die_at_5(p) -> None:
        if p.metrics and p.metrics["step"] == 5:
            raise Killed

    with pytest.raises(Killed):
        run_job(TorsoJob(project, SMALL), die_at_5)
    assert project.path(TORSO_CHECKPOINT_FILE).is_file() and not project.path(TORSO_FILE).exists()
    messages = []
    losses = run_job(TorsoJob(Project.open(project.root), SMALL), lambda p: messages.append(p.message))
    assert "Resuming the torso restorer at step 4" in messages[0] and len(losses) == 6
    assert project.path(TORSO_FILE).is_file() and not project.path(TORSO_CHECKPOINT_FILE).exists()
    project = Project.open(project.root)
    assert status(project)["torso"].current
    net, config = load_torso(project)

    # Outside the band the frame is untouched; inside it the restorer's pixels.
    tracking = load_tracking(project)
    with FrameReader(project.checked_footage().path) as reader:
        frame = reader.read(100)
    out = restore(net, frame, tracking["landmarks"][100], config)
    changed = np.any(out != frame, axis=2)
    assert changed.any() and changed.mean() < 0.2

    run_job(IngestJob(project, media_dir / "may_13s.mp4"))                   # other footage
    torso = status(Project.open(project.root))["torso"]
    assert not torso.current and "footage" in torso.reason
    with pytest.raises(ProjectError):
        load_torso(Project.open(project.root))


def test_a_dub_uses_a_trained_restorer_unless_told_not_to(trained_project, copy_project, media_dir, tmp_path):
    from core.dub import DubConfig, DubJob

    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    run_job(TorsoJob(project, SMALL))
    speech = media_dir / "speech_en_60s_16k.wav"
    restored = run_job(DubJob(project, speech, tmp_path / "r.mp4", DubConfig(end=0.2, watermark=False)))
    plain = run_job(DubJob(project, speech, tmp_path / "p.mp4", DubConfig(end=0.2, watermark=False, torso=False)))
    assert "the Torso Restorer rebuilds the chin and neck band" in restored.notes
    assert not any("Torso" in note for note in plain.notes)
    with FrameReader(tmp_path / "r.mp4") as a, FrameReader(tmp_path / "p.mp4") as b:
        assert not np.array_equal(a.read(2), b.read(2))


def test_training_crops_come_from_frames_decoded_once_and_match_crops_of_the_frames(tracked_project):
    """The cache holds an even spread of at most cache_frames training frames; a turned crop drawn from it is
    the crop ``sample`` makes from the decoded frame, within interpolation, with the same band; cancelling while
    it reads stops the read."""
    project = Project.open(tracked_project("katie_8s.mp4"))
    landmarks = load_tracking(project)["landmarks"]
    config = TorsoConfig(cache_frames=12)
    with FrameReader(project.checked_footage().path) as reader:
        cache = LowerFaceCache(reader, np.arange(20, 140), landmarks, config)
        assert len(cache.frames) == 12 and cache.frames[0] == 20 and cache.frames[-1] == 139
        for i, turn in ((int(cache.frames[3]), 7.5), (int(cache.frames[-1]), -10.0)):
            crop, band = cache.sample(i, 0.12, turn)
            direct, direct_band, _ = sample(reader.read(i), landmarks[i], config, 0.12, turn)
            assert np.array_equal(band, direct_band) and band.any()
            inner = (slice(8, -8), slice(8, -8))                              # the reflected border aside
            assert np.abs(crop[inner] - direct[inner]).mean() < 0.01
        token = CancelToken()
        token.cancel()
        with pytest.raises(Cancelled):
            LowerFaceCache(reader, np.arange(20, 140), landmarks, config, token)
