"""Avatar training as a job: presets, densification, checkpoints that survive a kill, cancel, pause, and the
held-out evaluation with its video."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from core.avatar.config import PRESETS, TrainConfig, preset
from core.avatar.drive import Driver
from core.avatar.evaluate import EvalJob
from core.avatar.files import load_avatar
from core.avatar.train import AvatarTrainer, TrainAvatarJob, frame_odds, initial_model, load_train_data
from core.config import from_dict, to_dict
from core.errors import AvatarStudioError
from core.jobs import Cancelled, CancelToken, run_job
from core.layout import AVATAR_FILE, CHECKPOINT_FILE, EVAL_FILE, VIDEO_FILE, eval_files
from core.project import Project
from core.tracking.landmarks import EXPRESSION_BLENDSHAPES

TINY = PRESETS["tiny"]
ROOT = Path(__file__).resolve().parents[1]


def test_presets_are_configs_that_round_trip():
    for name, config in PRESETS.items():
        assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(config)))) == config
        assert config.preset == name
    assert PRESETS["cpu-draft"].crop_size <= 256 and PRESETS["cpu-draft"].max_gaussians <= 20_000
    assert PRESETS["cpu-draft"].backend == "cpu" and PRESETS["gpu-quality"].backend == "cuda"
    with pytest.raises(AvatarStudioError, match="unknown training preset 'fast'"):
        preset("fast")


def test_densify_grows_within_budget_and_keeps_adam_in_step(voiced_project):
    project = Project.open(voiced_project("may_13s.mp4"))
    config = replace(TINY, max_gaussians=1150, densify_grow=0.5)
    data = load_train_data(project, config)
    trainer = AvatarTrainer(initial_model(project, data, config), data, config)
    for _ in range(3):
        trainer.train_step()
    with torch.no_grad():
        trainer.model.opacity_logits[:10] = -20                    # ten transparent Gaussians to prune
    trainer.strategy.densify(trainer.model, trainer.optimizer, trainer.step)
    n = len(trainer.model)
    assert n == 1150                                               # pruned 10, grew to the budget
    for group in trainer.optimizer.param_groups[:5]:
        param = group["params"][0]
        assert param is getattr(trainer.model, group["name"]) and param.shape[0] == n
        state = trainer.optimizer.state[param]
        assert state["exp_avg"].shape == param.shape and state["exp_avg_sq"].shape == param.shape
    before = trainer.model.means.detach().clone()
    trainer.train_step()
    assert not torch.equal(before, trainer.model.means.detach())  # the new parameters are the optimised ones


def test_training_frames_read_tracked_mouths_and_held_out_frames_the_audio(voiced_project):
    """Stage 2 deforms a training frame by the tracked mouths around it (the audio never reaches it) and a
    held-out frame by its audio, as driving does; the tracked window stops at the last training frame."""
    project = Project.open(voiced_project("may_13s.mp4"))
    data = load_train_data(project, TINY)
    model = initial_model(project, data, TINY)
    with torch.no_grad():
        for p in [*model.audio.parameters(), *model.deform.parameters()]:
            p.normal_(std=0.5)
    trainer = AvatarTrainer(model, data, TINY)
    train_i, held_i = 20, data.n_train + 5
    before = [trainer.render(i, stage=2)[1] for i in (train_i, held_i)]
    data.audio[:] = np.roll(data.audio, 7, axis=0)                  # other audio for every frame
    after = [trainer.render(i, stage=2)[1] for i in (train_i, held_i)]
    assert torch.equal(before[0], after[0]) and not torch.allclose(before[1], after[1])
    window = data.mouth_window(data.n_train - 1, model)                # [W,81] at the last training frame
    assert np.array_equal(window[model.mouth_centre], data.mouth[data.n_train - 1])
    assert np.array_equal(window[-1], data.mouth[data.n_train - 1])  # not the held-out frames after it


def _train_cli(project: Path, steps: tuple[int, int]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "core.cli", "train", "--project", str(project), "--preset",
                             "tiny", "--steps", str(steps[0]), str(steps[1])], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _history(project: Path) -> dict[int, float]:
    saved = torch.load(project / CHECKPOINT_FILE, weights_only=True)
    return {int(p["step"]): p["loss"] for p in json.loads(saved["history"])}


def test_sigkill_resumes_where_it_stopped(voiced_project, copy_project):
    """A training killed with SIGKILL resumes from its last checkpoint and reaches the same losses at the same
    steps as an uninterrupted run: Gaussians, networks, Adam moments and densification statistics all kept."""
    steps = (30, 30)
    whole = copy_project(voiced_project("may_13s.mp4"), "whole")
    killed = copy_project(voiced_project("may_13s.mp4"), "killed")
    assert _train_cli(whole, steps).wait(timeout=300) == 0

    proc = _train_cli(killed, steps)
    checkpoint = killed / CHECKPOINT_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["trainer"]["step"] >= 15:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = torch.load(checkpoint, weights_only=True)["trainer"]["step"]
    assert 15 <= stopped_at < sum(steps)
    assert not (killed / AVATAR_FILE).exists()

    assert _train_cli(killed, steps).wait(timeout=300) == 0
    expected, resumed = _history(whole), _history(killed)
    assert sorted(resumed) == sorted(expected) == list(range(1, sum(steps) + 1))
    assert resumed == expected                                     # bit for bit, the resumed steps included
    assert len(load_avatar(killed / AVATAR_FILE)[0]) == len(load_avatar(whole / AVATAR_FILE)[0])


def test_cancel_and_pause_keep_the_work(voiced_project, copy_project):
    project = Project.open(copy_project(voiced_project("may_13s.mp4")))
    cancel = CancelToken()
    job = TrainAvatarJob(project, TINY)
    seen: list[int] = []

    def progress(p):
        if p.metrics:
            seen.append(int(p.metrics["step"]))
            if p.metrics["step"] == 3:
                job.pause.set()                      # pause: the job waits between steps ...
                threading.Timer(0.3, cancel.cancel).start()  # ... until cancelled

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        job.run(progress, cancel)
    assert time.monotonic() - t0 < 60 and seen[-1] == 3
    saved = torch.load(project.path(CHECKPOINT_FILE), weights_only=True)
    assert saved["trainer"]["step"] == 3 and not project.path(AVATAR_FILE).exists()

    result = run_job(TrainAvatarJob(project, TINY))          # resumes at step 3 and finishes
    assert result.steps == TINY.steps and result.history[0]["step"] == 1
    assert project.path(AVATAR_FILE).is_file() and "avatar" in Project.open(project.root).stages
    assert run_job(TrainAvatarJob(project, TINY)).history == []   # up to date: nothing to do


def test_training_needs_tracking_and_audio(tracked_project, copy_project):
    project = Project.open(copy_project(tracked_project("may_13s.mp4")))
    with pytest.raises(AvatarStudioError, match="the audio features have not been made yet: make the audio features first"):
        run_job(TrainAvatarJob(project, TINY))
    if not torch.cuda.is_available():
        with pytest.raises(AvatarStudioError, match="CUDA"):
            run_job(TrainAvatarJob(project, PRESETS["gpu-quality"]))


@pytest.mark.slow
def test_eval_scores_held_out_frames_and_writes_the_video(voiced_project, copy_project, artifacts_dir):
    project = Project.open(copy_project(voiced_project("may_13s.mp4")))
    run_job(TrainAvatarJob(project, TINY))
    report = run_job(EvalJob(project))
    assert report["frames"] == 66 and report["first_frame"] == 265
    saved = json.loads(project.path(EVAL_FILE).read_text())
    for key in ("face_psnr", "full_psnr", "ssim", "lmd_centred", "lmd_raw", "mouth_r", "drive_r"):
        assert np.isfinite(saved[key])
    assert 10 < saved["face_psnr"] < saved["full_psnr"]            # the face is the hard part
    with av.open(str(project.path(VIDEO_FILE))) as c:
        video = c.streams.video[0]
        assert (video.width, video.height) == (1024, 512) and c.streams.audio
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video)]
    assert len(frames) == 66
    from PIL import Image

    Image.fromarray(frames[30]).save(artifacts_dir / "avatar_eval_tiny.png")


def test_tracked_mouths_drive_the_lips_as_training_fed_them(trained_project, copy_project):
    """The renderer's best case reads a frame's tracked mouths exactly as training did, and a held-out frame
    its own tracked mouth, which training never saw."""
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    driver = Driver.load(project)
    model, data = driver.model, load_train_data(project, driver.config)
    i = data.n_train // 2
    with torch.no_grad():
        trained = model.lip_from_mouth(torch.from_numpy(data.mouth_window(i, model)))
    torch.testing.assert_close(driver.tracked_lip(i), trained)
    j = len(data) - 3
    window = model.mouth_window(driver.mouths, j, len(data) - 1)                   # [W,81]
    np.testing.assert_array_equal(window[model.mouth_centre], data.mouth[j])
    assert not np.allclose(data.mouth_window(j, model), window)                  # training's is clamped to its frames
    projected = data.mouth[j] @ model.mouth_projector.numpy()                     # [81] as the lip feature reads it
    assert model.driven_opening(driver.tracked_mouths(j)) == pytest.approx(projected[0], abs=1e-5)
    with pytest.raises(ValueError, match="mouth must be one of"):
        EvalJob(project, "video")


@pytest.mark.slow
def test_eval_with_tracked_mouths_writes_its_own_report(trained_project, copy_project):
    project = Project.open(copy_project(trained_project("may_13s.mp4")))
    report = run_job(EvalJob(project, "tracked"))
    report_file, video_file = eval_files("tracked")
    assert json.loads(project.path(report_file).read_text()) == report and report["mouth"] == "tracked"
    assert report["frames"] == 66 and np.isfinite(report["mouth_r"]) and np.isfinite(report["lmd_centred"])
    assert project.path(video_file).is_file() and not project.path(EVAL_FILE).exists()
    # Before rendering, tracked mouths drive the opening of each frame itself, through the 4-component projector.
    assert report["drive_r"] > 0.95 and report["drive_lag"] == 0


def test_gpu_quality_path_runs_up_to_the_backend_call(voiced_project, copy_project, monkeypatch):
    """The gpu-quality preset's path on this CPU machine: the job asks rasterize for the CUDA backend at the
    preset's crop size; a stand-in renders on the CPU instead, so everything before and after is exercised."""
    import core.avatar.train as train
    from core.avatar.gaussians import InitConfig
    from core.avatar.model import AvatarConfig

    calls, cpu_rasterize = [], train.rasterize

    def fake_rasterize(*args, backend, camera, **kwargs):
        calls.append((backend, camera.width, camera.height))
        return cpu_rasterize(*args, camera=camera, backend="cpu", **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train, "rasterize", fake_rasterize)
    config = replace(PRESETS["gpu-quality"], avatar=AvatarConfig(init=InitConfig(n_gaussians=500)),
                     stage1_steps=2, stage2_steps=1, checkpoint_every=1)
    project = Project.open(copy_project(voiced_project("may_13s.mp4")))
    result = run_job(TrainAvatarJob(project, config))
    assert result.steps == 3
    assert calls[0] == ("cuda", 512, 512) and all(c == calls[0] for c in calls)
    assert load_avatar(project.path(AVATAR_FILE))[1].backend == "cuda"


def test_stage_two_draws_a_clips_blinks_more_often_and_weights_the_eyes(voiced_project):
    """The few frames where May blinks are drawn several times their share in stage 2 (stage 1 draws evenly), and
    the loss weighs each eye's box as it weighs the lips'."""
    project = Project.open(voiced_project("may_13s.mp4"))
    data = load_train_data(project, TINY)
    expr = data.views.expr[data.train_frames]                          # [N,E]
    names = list(EXPRESSION_BLENDSHAPES)
    blink = expr[:, [names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")]].mean(axis=1) > 0.5
    assert 0 < blink.sum() < 0.1 * len(blink)
    odds = frame_odds(expr, TINY.rare_expression_boost)
    assert odds.sum() == pytest.approx(1) and (odds > 0).all()
    assert odds[blink].sum() > 2.5 * blink.mean()
    assert frame_odds(expr, 0.0) == pytest.approx(np.full(len(expr), 1 / len(expr)))
    boxes = data.emphasis_boxes(data.n_train - 1, TINY)
    assert [w for _, w in boxes] == [TINY.mouth_weight, TINY.eye_weight, TINY.eye_weight]
    (mx0, my0, mx1, my1), (lx0, ly0, lx1, ly1), (rx0, ry0, rx1, ry1) = [b for b, _ in boxes]
    assert ly1 < my0 and ry1 < my0 and (lx0 > rx1 or rx0 > lx1)       # both eyes above the lips, side by side
