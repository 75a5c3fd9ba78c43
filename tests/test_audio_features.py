"""Audio features: log-mel windows, the streaming extractor, bad input, SyncTalk checkpoint import, and the
audio stage as a job (cached, cancel, resume, CLI)."""

from __future__ import annotations

import contextlib
import io
import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

from core.audio.ave import AudioEncoder, import_synctalk_checkpoint
from core.audio.features import (AVE_MEL, AudioConfig, AudioFeaturesJob, AveEncoder, WhisperEncoder, load_encoder,
                                 load_features, sync_check)
from core.audio.mel import SYNCTALK_MEL, frame_mel_index, frames_for_audio, log_mel, mel_windows
from core.audio.stream import StreamingFeatures
from core.audio.train_ave import AveTrainConfig, mouth_score
from core.cli import main
from core.errors import AvatarStudioError, MediaError, ProjectError
from core.jobs import CancelToken, Cancelled, run_job
from core.media import load_audio
from core.project import Project

TINY = AveTrainConfig(steps=6, batch=8, width=8, eval_every=3, checkpoint_every=3)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return AveEncoder(AudioEncoder(16).eval(), AVE_MEL)


# --- mel -------------------------------------------------------------------------------------------------
def test_silence_is_the_floor_and_speech_is_not(media_dir):
    assert torch.all(log_mel(np.zeros(16000, np.float32)) == -4.0)
    speech = load_audio(media_dir / "speech_radio_8s_16k.wav")
    mel = log_mel(speech)
    assert mel.shape == (80, 1 + len(speech) // 160)
    assert mel.max() > 0.0 and torch.isfinite(mel).all()


def test_windows_start_where_the_config_says():
    """Frame i's window is mel frames floor(i*rate/fps) + window_start ..., for ours and SyncTalk's layout."""
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    for cfg, fps in ((AVE_MEL, Fraction(25)), (SYNCTALK_MEL, Fraction(25)), (AVE_MEL, Fraction(30000, 1001))):
        n = frames_for_audio(len(audio), fps)
        w = mel_windows(audio, n, fps, cfg)
        assert w.shape == (n, 1, 80, 16)
        full = log_mel(audio, cfg, -40, 1000)
        for i in (0, 7, n - 1):
            start = int(frame_mel_index(i, fps, cfg)) + cfg.window_start + 40
            assert torch.equal(w[i, 0], full[:, start:start + 16])
    assert frame_mel_index(10, 25, SYNCTALK_MEL) == int(80 * 10 / 25)   # SyncTalk's AudDataset indexing


# --- streaming ---------------------------------------------------------------------------------------------
def test_streaming_equals_offline_in_random_chunks(media_dir, encoder):
    audio = load_audio(media_dir / "speech_en_60s_16k.wav")
    n = frames_for_audio(len(audio), 25)
    offline = encoder.features(audio, n, Fraction(25))
    stream = StreamingFeatures(encoder, 25)
    rng = np.random.default_rng(1)
    out, pos, ready_at = [], 0, {}
    while pos < len(audio):
        size = int(rng.choice([1, 17, 160, 640, 2000, 16000]))
        got = stream.push(audio[pos:pos + size])
        pos += size
        for i in range(stream.frames_done - len(got), stream.frames_done):
            ready_at[i] = pos
        out.append(got)
    out.append(stream.flush(n))
    streamed = np.concatenate(out)
    assert streamed.shape == offline.shape == (n, 512)
    assert np.abs(streamed - offline).max() < 1e-5
    # The documented lookahead: frame i arrives once audio up to i/fps + lookahead is in, not later.
    for i in (0, 100, 1000):
        assert ready_at[i] <= round((i / 25 + stream.latency_s) * 16000) + 16000
    assert stream.latency_s == pytest.approx(0.1625)


def test_streaming_frame_by_frame_latency(encoder):
    """Pushing exactly 40 ms at a time, each frame comes out a fixed number of chunks after its time."""
    stream = StreamingFeatures(encoder, 25)
    tone = (0.3 * np.sin(np.arange(16000 * 2) * 0.05)).astype(np.float32)
    first_frames = []
    for k in range(50):
        got = stream.push(tone[k * 640:(k + 1) * 640])
        first_frames.append(stream.frames_done - len(got) if len(got) else None)
    delays = [k - f for k, f in enumerate(first_frames) if f is not None]
    assert delays and max(delays) <= int(np.ceil(stream.latency_s * 25))


def test_streaming_refuses_whisper():
    with pytest.raises(AvatarStudioError, match="mel-window encoder"):
        StreamingFeatures(WhisperEncoder(), 25)


# --- bad input ---------------------------------------------------------------------------------------------
def _wav(path, samples: np.ndarray, rate: int) -> None:
    """int16 WAV of samples [S] or [S, channels]."""
    data = np.atleast_2d(samples.T).T
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.mark.parametrize("case", ["silence", "clipped", "8k", "96k", "6ch", "0.2s"])
def test_odd_audio_gives_features(case, tmp_path, media_dir, encoder):
    speech = load_audio(media_dir / "speech_radio_8s_16k.wav")[:16000 * 2]
    rate, samples = 16000, speech
    if case == "silence":
        samples = np.zeros(32000, np.float32)
    elif case == "clipped":
        samples = np.clip(speech * 40, -1, 1)
    elif case in ("8k", "96k"):
        rate = 8000 if case == "8k" else 96000
        samples = np.interp(np.arange(2 * rate) / rate, np.arange(len(speech)) / 16000, speech)
    elif case == "6ch":
        samples = np.stack([speech * g for g in (1, 0.5, 0.2, 0.1, 0.8, 0.3)], axis=1)
    elif case == "0.2s":
        samples = speech[8000:8000 + 3200]
    _wav(tmp_path / "in.wav", samples, rate)
    audio = load_audio(tmp_path / "in.wav")
    n = frames_for_audio(len(audio), 25)
    assert n == (5 if case == "0.2s" else 50)
    feats = encoder.features(audio, n, Fraction(25))
    assert feats.shape == (n, 512) and np.isfinite(feats).all()
    whisper = WhisperEncoder().features(audio, n, Fraction(25))
    assert whisper.shape == (n, 384) and np.isfinite(whisper).all()


def test_not_audio_is_named(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not sound")
    with pytest.raises(MediaError, match="notes.wav"):
        load_audio(path)


# --- SyncTalk checkpoint -------------------------------------------------------------------------------------
def test_import_synctalk_checkpoint(tmp_path):
    torch.manual_seed(3)
    theirs = AudioEncoder(32).eval()
    path = tmp_path / "audio_visual_encoder.pth"
    torch.save(theirs.audio_encoder.state_dict(), path)          # SyncTalk saves the Sequential's keys
    ours = import_synctalk_checkpoint(path)
    mel = torch.randn(4, 1, 80, 16)
    with torch.no_grad():
        assert torch.equal(ours(mel), theirs(mel))


def test_import_rejects_what_is_not_a_synctalk_encoder(tmp_path):
    small = tmp_path / "small.pth"
    torch.save(AudioEncoder(16).audio_encoder.state_dict(), small)
    with pytest.raises(AvatarStudioError, match="wrong shapes"):
        import_synctalk_checkpoint(small)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(AvatarStudioError, match="missing"):
        import_synctalk_checkpoint(other)
    code = tmp_path / "code.pth"
    torch.save({"x": Fraction(1, 2)}, code)                          # an object weights_only refuses to unpickle
    with pytest.raises(AvatarStudioError, match="loads safely"):
        import_synctalk_checkpoint(code)
    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(AvatarStudioError, match="text.pth"):
        import_synctalk_checkpoint(text)
    with pytest.raises(AvatarStudioError, match="no such"):
        import_synctalk_checkpoint(tmp_path / "missing.pth")


# --- the job ------------------------------------------------------------------------------------------------
def test_job_needs_tracking(media_dir, tmp_path):
    from core.ingest import IngestJob

    project = Project.create(tmp_path / "p")
    run_job(IngestJob(project, media_dir / "katie_8s.mp4"))
    with pytest.raises(ProjectError, match="track the face first"):
        run_job(AudioFeaturesJob(project, AudioConfig(encoder="ave+whisper", train=TINY)))


@pytest.mark.slow
def test_ave_job_caches_cancels_and_resumes_exactly(tracked_project, copy_project):
    """A cancelled run keeps its checkpoint; resuming ends where an uninterrupted run ends."""
    config = AudioConfig(encoder="ave+whisper", train=TINY)
    straight = Project.open(copy_project(tracked_project("katie_8s.mp4")))
    done = run_job(AudioFeaturesJob(straight, config))
    assert done.features.shape == (200, 512 + 384) and np.isfinite(done.features).all()   # AVE + Whisper
    assert set(done.report) == {"mouth_r", "mouth_r_ave", "offset_frames", "sync_score"}

    resumed = Project.open(copy_project(tracked_project("katie_8s.mp4"), "resumed"))
    token = CancelToken()

    def stop_after_step_4(p):
        if p.metrics and p.metrics["step"] >= 4:
            token.cancel()

    with pytest.raises(Cancelled):
        run_job(AudioFeaturesJob(resumed, config), stop_after_step_4, token)
    assert resumed.path("ave_train.pt").is_file() and not resumed.path("audio_features.npz").exists()
    steps = []
    again = run_job(AudioFeaturesJob(Project.open(resumed.root), config),
                    lambda p: p.metrics and steps.append(int(p.metrics["step"])))
    assert steps[0] == 5                                              # continued after the checkpoint at 4
    np.testing.assert_array_equal(again.features, done.features)
    assert again.report == done.report

    # Unchanged config and inputs: nothing runs again.
    messages = []
    cached = run_job(AudioFeaturesJob(Project.open(resumed.root), config), lambda p: messages.append(p.message))
    assert messages == ["Audio features are up to date"]
    np.testing.assert_array_equal(cached.features, done.features)
    saved = load_features(Project.open(resumed.root))
    assert saved.encoder == "ave+whisper-tiny.en" and saved.blocks == done.blocks == (512, 384)
    new = load_encoder(Project.open(resumed.root))
    np.testing.assert_allclose(new.features(load_audio(resumed.path("audio_16k.wav")), 200, Fraction(25)),
                               done.features, atol=1e-5)


@pytest.mark.slow
def test_cli_audio_whisper(tracked_project, copy_project):
    root = copy_project(tracked_project("katie_8s.mp4"))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["audio", "--project", str(root), "--encoder", "whisper"]) == 0
    assert "200 frames x 384 (whisper-tiny.en)" in stdout.getvalue()
    assert load_features(Project.open(root)).features.shape == (200, 384)
    assert main(["audio", "--project", str(root), "--encoder", "synctalk"]) == 2


@pytest.mark.slow
def test_may_held_out_mouth_and_sync(tracked_project, copy_project):
    """Issue figures on may_13s, last 20% held out: AVE + Whisper features predict the mouth opening (a linear
    readout per encoder, averaged: r >= 0.6; benchmarks/audio.py --seeds 0 1 2 3 gives 0.62-0.73) and the sync
    model finds the true offset (0) and a 5-frame delay (5), each ± 1."""
    project = Project.open(copy_project(tracked_project("may_13s.mp4")))
    result = run_job(AudioFeaturesJob(project, AudioConfig(encoder="ave+whisper")))
    r = result.report
    print(f"may_13s held out: mouth r {r['mouth_r']:.3f} (AVE alone {r['mouth_r_ave']:.3f}), "
          f"offset {r['offset_frames']:+.0f}, sync margin {r['sync_score']:.3f}")
    assert r["mouth_r"] >= 0.6
    assert abs(r["offset_frames"]) <= 1 and r["sync_score"] > 0
    delayed = sync_check(project, 5)
    print(f"audio delayed 5 frames: offset {delayed['offset_frames']:+.0f}")
    assert abs(delayed["offset_frames"] - 5) <= 1


def _landmarks_opening(opening: np.ndarray) -> np.ndarray:
    """float32 [T,478,2] landmarks with outer eye corners one unit apart and the inner lips ``opening`` apart."""
    lm = np.zeros((len(opening), 478, 2), np.float32)
    lm[:, 263, 0] = 1.0
    lm[:, [13, 14], 0] = 0.5
    lm[:, 13, 1] = 0.5
    lm[:, 14, 1] = 0.5 + opening
    return lm


def test_mouth_score_gives_each_encoder_its_own_readout():
    """An encoder trained on the footage (block A: exact on its training frames, noise on the held-out ones)
    crowds a generalising one (block B) out of a joint readout; one readout per block, averaged, does not."""
    rng = np.random.default_rng(0)
    t, n = 200, 160
    opening = np.convolve(rng.normal(size=t + 8), np.ones(9) / 9, "valid") + 1.0      # [T] smooth
    landmarks = _landmarks_opening(opening)
    memorised = np.outer(opening, rng.normal(size=64)) + 0.01 * rng.normal(size=(t, 64))
    memorised[n:] = rng.normal(scale=memorised[:n].std(0), size=(t - n, 64))         # nothing learnt held out
    general = opening[:, None] + 0.1 * rng.normal(size=(t, 8))                         # [T,8]
    features = np.concatenate([memorised, general], axis=1)
    joint = mouth_score(features, landmarks, 0.2)
    fused = mouth_score(features, landmarks, 0.2, blocks=(64, 8))
    assert fused > joint + 0.1
    assert fused > 0.6 and mouth_score(general, landmarks, 0.2) > 0.9
    with pytest.raises(ValueError, match="add up"):
        mouth_score(features, landmarks, 0.2, blocks=(64, 4))
