"""The Expression Generator (issue "SyncTalk++'s two remaining modules"): the blink detector on made tracks, the
generator's determinism by seed, and its blink-rate control measured by the same detector."""

from __future__ import annotations

import numpy as np
import pytest

from core.expression.generator import (PROFILE_MS, BrowProcess, ExpressionModel, GeneratorConfig, Subject,
                                       blink_stats, detect_blinks, generate)

FPS = 25.0


def blinking(frames: int, peaks: list[int], width: int = 3, height: float = 0.6, rest: float = 0.12,
             noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A mean eyeBlink track resting at ``rest`` with triangular blinks ``width`` frames either side of ``peaks``."""
    t = np.arange(frames)
    track = np.full(frames, rest)
    for p in peaks:
        track += height * np.clip(1 - np.abs(t - p) / width, 0, None)
    return track + np.random.default_rng(seed).normal(0, noise, frames)


def test_the_detector_finds_blinks_and_ignores_one_frame_flickers_and_jitter():
    track = blinking(500, [40, 140, 260, 400], noise=0.02)
    track[300] += 0.5                                                      # a one-frame tracker flicker
    found = detect_blinks(track, FPS)
    assert [b.peak for b in found] == [40, 140, 260, 400]
    assert all(b.height == pytest.approx(0.6, abs=0.08) for b in found)
    rate, duration = blink_stats(track, FPS)
    assert rate == pytest.approx(4 / (500 / FPS / 60)) and duration == pytest.approx(120, abs=41)  # 3 frames
    assert detect_blinks(blinking(500, [], noise=0.03), FPS) == []


def model(rate: float = 20.0) -> ExpressionModel:
    profile = np.clip(1 - np.abs(PROFILE_MS) / 100, 0, None)              # a 200 ms blink
    return ExpressionModel(interval_shape=2.0, interval_scale=60.0 / rate / 2.0, profile=profile,
                           brow_weights=np.zeros((464 * 3 + 1, 5), np.float32),
                           brows=BrowProcess(slow_std=0.7, slow_ar=0.95, fast_std=0.4, fast_ar=0.2))


SUBJECT = Subject(brow_mean=np.full(5, 0.2), brow_slow=np.eye(5) * 0.04**2, brow_fast=np.full(5, 0.03), eye_rest=0.12,
                  eye_jitter=0.0, blink_height=0.6)


def test_the_same_seed_gives_the_same_track_and_another_seed_another():
    states = np.random.default_rng(1).normal(size=(1500, 464)).astype(np.float32)  # 30 s of 50 Hz states
    a = generate(model(), SUBJECT, states, 750, FPS, GeneratorConfig(seed=3))
    b = generate(model(), SUBJECT, states, 750, FPS, GeneratorConfig(seed=3))
    c = generate(model(), SUBJECT, states, 750, FPS, GeneratorConfig(seed=4))
    assert a.shape == (750, 7) and np.array_equal(a, b) and not np.array_equal(a, c)
    still = generate(model(), SUBJECT, states, 750, FPS, GeneratorConfig(seed=3, expressiveness=0.0))
    np.testing.assert_allclose(still[:, :5], 0.2, atol=1e-6)               # no expressiveness: brows at rest
    assert 0.04 < a[:, 0].std() < 0.08                                     # the subject's spread, as learnt


def test_the_blink_rate_control_changes_the_measured_rate():
    states = np.zeros((60 * 50, 464), np.float32)                          # a minute
    measured = {}
    for rate in (10.0, 30.0):
        rates = [blink_stats(generate(model(), SUBJECT, states, 1500, FPS,
                                      GeneratorConfig(seed=s, blink_rate=rate))[:, 5], FPS)[0] for s in range(8)]
        measured[rate] = float(np.mean(rates))
    assert measured[10.0] == pytest.approx(10.0, rel=0.3) and measured[30.0] == pytest.approx(30.0, rel=0.3)
    assert generate(model(), SUBJECT, states, 1500, FPS, GeneratorConfig(blink_rate=0))[:, 5].max() == \
        pytest.approx(0.12)                                                 # no blinks: the eyelids at rest


def test_the_codebook_rebuilds_the_subjects_own_track_closely_and_pulls_another_face_into_its_range(
        tracked_project):
    from core.expression.codebook import in_range, learn_subject, shipped_prior
    from core.project import Project
    from core.tracking.landmarks import BLENDSHAPE_NAMES, EXPRESSION_BLENDSHAPES
    from core.tracking.track import load_tracking

    core = [BLENDSHAPE_NAMES.index(n) for n in EXPRESSION_BLENDSHAPES]
    may = load_tracking(Project.open(tracked_project("may_13s.mp4")))["blendshapes"][:, core]     # [331,7]
    subject = learn_subject(shipped_prior(), may)
    again = learn_subject(shipped_prior(), may)
    rebuilt = in_range(subject, may)
    np.testing.assert_array_equal(rebuilt, in_range(again, may))           # the same codebook from the same footage
    error = np.abs(rebuilt - may).mean()
    assert error < 0.04, error                                             # about a fifth of the shapes' spread
    assert np.corrcoef(rebuilt[:, 5], may[:, 5])[0, 1] > 0.8               # the blinks survive the round trip
    frowning = np.clip(may + np.array([0.6, 0.6, 0, 0, 0, 0, 0]), 0, 1)   # brows far lower than she ever holds them
    pulled = in_range(subject, frowning)
    assert pulled[:, :2].mean() < frowning[:, :2].mean() - 0.1             # brought back toward what she does


@pytest.mark.slow
def test_training_on_chosen_corpus_clips_writes_a_generator_codebook_and_card_naming_them(corpus_dir, tmp_path,
                                                                                          capsys):
    """``expression-model train --clips`` (e.g. only clips whose terms allow a use) fits on those clips alone and
    says so in the model card, beside the codebook prior and both sha256 files."""
    from core.cli import main
    from core.expression.codebook import load_codebook
    from core.expression.generator import load_generator

    clips = ["edtalk__pose_source2.mp4", "mimictalk__German_20s.mp4", "pcavs__Audio_Source_741400104.mp4",
             "pcavs__Pose_Source_741400163.mp4", "facegood__zismeif.mp4", "videoretalking__face1.mp4",
             "videoretalking__face4.mp4"]                                  # Apache-2.0, MIT, CC BY: six speakers
    out = tmp_path / "model" / "expression_generator.npz"
    assert main(["expression-model", "train", "--corpus", str(corpus_dir), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--clips", *clips, "--prior-steps", "100"]) == 0
    _, card = load_generator(out, out.with_name(out.name + ".sha256").read_text().split()[0])
    assert card["codebook"]["config"]["prior_steps"] == 100
    assert {c["file"].split("/")[-1] for c in card["trained_on"]} | {f.split("/")[-1] for f in card["left_out"]} \
        == set(clips)
    assert len(card["validation"]["held_out_speakers"]) == 3 and card["terms"]
    book = out.with_name(card["codebook"]["file"])
    load_codebook(book, book.with_name(book.name + ".sha256").read_text().split()[0])
    assert set(card["terms"]) == {"Apache-2.0", "MIT", "CC BY 4.0; footage: VoxCeleb2 (YouTube)"}
    assert main(["expression-model", "train", "--corpus", str(corpus_dir), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--clips", "nothing_such.mp4"]) == 1
    # Too few blinks to learn from: said so, not a crash.
    assert main(["expression-model", "train", "--corpus", str(corpus_dir), "--out", str(tmp_path / "few.npz"),
                 "--cache", str(tmp_path / "cache"), "--clips", *clips[2:]]) == 1    # 6 s left to fit on
    assert "too few blinks" in capsys.readouterr().err and not (tmp_path / "few.npz").exists()
