"""The trivial baselines of the avatar benchmark: alignment, retrieval, and their scores on may_13s."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from core.baselines import baselines, nearest_by_audio, similarity
from core.media import load_audio
from core.project import Project
from core.tracking.track import load_tracking


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(100, 400, (478, 2)).astype(np.float32)
    angle, s, t = np.radians(7), 1.1, np.array([12.0, -5.0])
    rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + t
    m = similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-4)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-2)


def test_nearest_by_audio_finds_the_copy():
    rng = np.random.default_rng(1)
    windows = rng.normal(size=(20, 64))
    windows[17] = windows[3] + 1e-3                                  # held-out 17 sounds like training 3
    assert nearest_by_audio(windows, np.arange(15), np.array([17]))[0] == 3


@pytest.mark.slow
def test_baselines_on_may(tracked_project):
    project = Project.open(tracked_project("may_13s.mp4"))
    landmarks = load_tracking(project)["landmarks"]
    result = baselines(project.footage.path, load_audio(project.path("audio_16k.wav")), landmarks, Fraction(25))
    for name, s in result.items():
        print(name, {k: round(v, 3) for k, v in s.items()})
        assert 20 < s["face_psnr"] < s["full_psnr"] < 40 and 0.8 < s["ssim"] < 1
        assert 0 < s["lmd_centred"] < s["lmd_raw"] < 10
    # A mean face barely moves its mouth: it cannot follow speech.
    assert result["mean face"]["mouth_r"] < 0.5
