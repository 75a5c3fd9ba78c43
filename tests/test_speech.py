"""The speech-to-face model: shipped weights checked by hash, streaming equal to offline, silence at rest, the ARKit
CSV export, and training on corpus clips into a model that drives an avatar."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.errors import AvatarStudioError
from core.expression.arkit_csv import ARKIT_NAMES, read_csv
from core.media import load_audio
from core.metrics import mouth_sync_r
from core.speech.frontend import Frontend
from core.speech.lipsync import blendshape_track
from core.speech.model import SHIPPED_FILE, at_frames, load_model, shipped_model
from core.speech.stream import StreamingSpeech
from core.speech.targets import OPENING
from core.tracking.landmarks import BLENDSHAPE_NAMES


@pytest.fixture(scope="module")
def shipped():
    model = shipped_model()
    return model, Frontend(model.net.config.frontend)


def _shipped_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("resources") / "models" / SHIPPED_FILE))


def test_shipped_model_has_a_card_with_its_clips_and_speaker_disjoint_figures(shipped):
    model, _ = shipped
    card = model.card
    assert len(card["trained_on"]) >= 20 and all(c["terms"] for c in card["trained_on"])
    assert "speaker" in card["validation"]["method"]
    assert card["validation"]["median_speaker_r"] > 0.5
    assert card["lookahead_ms"] <= 200


def test_a_tampered_or_foreign_weights_file_is_refused_with_a_clear_message(tmp_path):
    original = _shipped_path()
    digest = (original.parent / (SHIPPED_FILE + ".sha256")).read_text().split()[0]
    tampered = tmp_path / SHIPPED_FILE
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(AvatarStudioError, match="does not match its recorded sha256"):
        load_model(tampered, digest)
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"\x80\x04not a model" * 10)
    with pytest.raises(AvatarStudioError, match="not a readable speech model"):
        load_model(foreign)
    with pytest.raises(AvatarStudioError, match="no speech model there"):
        load_model(tmp_path / "missing.pt")


def test_streaming_equals_offline(shipped, media_dir):
    model, frontend = shipped
    audio = load_audio(media_dir / "speech_radio_8s_16k.wav")[:16000 * 4 + 777]
    stream = StreamingSpeech(model.net, frontend, 25)
    rng = np.random.default_rng(1)
    parts, i = [], 0
    while i < len(audio):
        n = int(rng.integers(50, 4000))
        parts.append(stream.push(audio[i:i + n]))
        i += n
    parts.append(stream.flush())
    streamed = np.concatenate(parts)                                                  # [T,K]
    offline = at_frames(model.net.predict(frontend.states(audio)), len(streamed), 25)
    assert len(streamed) == 102                                                       # frames up to 4.048 s
    assert np.abs(streamed - offline).max() < 1e-4
    assert stream.latency_s <= 0.25


def test_silence_gives_a_closed_resting_mouth(shipped):
    model, frontend = shipped
    silence = np.zeros(16000 * 2, np.float32)
    z = at_frames(model.net.predict(frontend.states(silence)), 50, 25)
    assert z[:, model.net.config.outputs.index(OPENING)].max() < 0.0
    track = blendshape_track(model, frontend, silence, 25)
    assert track[:, BLENDSHAPE_NAMES.index("jawOpen")].max() < 0.02


def test_lipsync_writes_arkit_csv_that_follows_the_speakers_jaw(tracked_project, tmp_path, media_dir):
    from core.project import Project
    from core.tracking.track import load_tracking

    out = tmp_path / "katie.csv"
    assert main(["lipsync", str(media_dir / "katie_8s.mp4"), "--csv", str(out), "--fps", "25"]) == 0
    take = read_csv(out)
    header = out.read_text().splitlines()[0].split(",")
    assert header[2:54] == list(ARKIT_NAMES)
    assert np.all(np.diff(take.times) > 0) and abs(take.fps - 25) < 1e-6
    tracking = load_tracking(Project.open(tracked_project("katie_8s.mp4")))
    tracked = tracking["blendshapes"][:, BLENDSHAPE_NAMES.index("jawOpen")]
    jaw = take.blendshapes[:, list(ARKIT_NAMES).index("JawOpen")]
    n = min(len(jaw), len(tracked))
    r, _ = mouth_sync_r(jaw[:n], tracked[:n], 3)
    assert r > 0.4                                    # at its best lag: katie's sound comes late against her picture


def test_lipsync_names_a_bad_speech_file(tmp_path):
    bad = tmp_path / "speech.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["lipsync", str(bad), "--csv", str(tmp_path / "out.csv")]) == 1
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_training_on_four_corpus_clips_writes_a_model_that_drives_an_avatar(corpus_dir, tracked_project,
                                                                           copy_project, media_dir, tmp_path):
    from core.audio.features import AudioConfig, AudioFeaturesJob
    from core.avatar.config import PRESETS
    from core.avatar.train import TrainAvatarJob
    from core.dub import DubConfig, DubJob
    from core.jobs import run_job
    from core.project import Project

    clips = ["lipnet__GRID_sbwe5n.mpg", "lipnet__GRID_id2_vcd_swwp2s.mpg", "lipnet__GRID_bbaf2n.mpg",
             "lipnet__GRID_lrwp9a.mpg"]
    out = tmp_path / "model" / "speech_model.pt"
    assert main(["speech-model", "train", "--corpus", str(corpus_dir), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--clips", *clips]) == 0
    digest = out.with_name(out.name + ".sha256").read_text().split()[0]
    model = load_model(out, digest)
    used = {Path(c["file"]).name for c in model.card["trained_on"]}
    assert used | {Path(f).name for f in model.card["left_out"]} == set(clips) and len(used) >= 2
    assert model.card["validation"]["speakers"]

    project = Project.open(copy_project(tracked_project("katie_8s.mp4")))
    features = run_job(AudioFeaturesJob(project, AudioConfig(encoder="speech", speech_model=out)))
    assert features.features.shape == (200, len(model.net.config.outputs)) and features.encoder == "speech"
    run_job(TrainAvatarJob(project, PRESETS["tiny"]))
    result = run_job(DubJob(project, media_dir / "speech_radio_8s_16k.wav", tmp_path / "dub.mp4",
                            DubConfig(end=1.0)))
    assert result.frames == 25
    shutil.rmtree(tmp_path / "cache")


def _picture_only(src: Path, dst: Path) -> None:
    """``src``'s video stream alone, remuxed into ``dst`` (no sound)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = inp.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in inp.demux(video):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


@pytest.mark.slow
def test_silent_footage_and_sound_recorded_apart_train_and_dub(media_dir, tmp_path, capsys):
    from core.audio.features import load_features
    from core.media import write_wav
    from core.project import Project

    clip = media_dir / "katie_8s.mp4"
    picture = tmp_path / "katie_picture.mp4"
    _picture_only(clip, picture)
    sound = tmp_path / "katie_sound.wav"
    write_wav(sound, np.concatenate([np.zeros(3200, np.float32), load_audio(clip)]))   # 0.2 s late
    offsets = {}
    cases = (("own", clip, []), ("silent", picture, []), ("apart", picture, ["--audio", str(sound)]))
    for name, footage, extra in cases:
        root = tmp_path / name
        assert main(["ingest", str(footage), "--project", str(root), *extra]) == 0
        assert main(["track", "--project", str(root)]) == 0
        assert main(["audio", "--project", str(root)]) == 0
        offsets[name] = load_features(Project.open(root)).report.get("offset_frames")
        if name != "own":
            assert main(["train", "--project", str(root), "--preset", "tiny"]) == 0
            out = tmp_path / f"{name}.mp4"
            assert main(["dub", "--project", str(root), "--audio", str(media_dir / "speech_radio_8s_16k.wav"),
                         "--out", str(out), "--end", "1"]) == 0 and out.is_file()
    assert offsets["silent"] is None and "no sound" in capsys.readouterr().out
    assert abs(offsets["apart"] - offsets["own"] - 5) <= 1     # 0.2 s = 5 frames at 25 fps


def test_a_corpus_clips_fractional_offset_is_found_and_removed_from_its_targets():
    from core.metrics import fractional_lag
    from core.speech.train import Prepared

    rng = np.random.default_rng(3)
    w, phase = rng.uniform(0.2, 0.9, 12), rng.uniform(0, 2 * np.pi, 12)     # 1 to 4 Hz at 25 fps, like a mouth

    def mouth(t: np.ndarray) -> np.ndarray:
        return np.sin(np.outer(t, w) + phase).sum(1)

    t = np.arange(300.0)
    valid = np.ones(300, bool)
    valid[100:110] = False                                                  # an untracked stretch
    estimate = mouth(t - 1.6)                 # from the sound, which comes 1.6 frames late against the picture
    offset, r = fractional_lag(estimate, mouth(t), valid)
    assert offset == pytest.approx(1.6, abs=0.2) and r > 0.9

    clip = Prepared(clip=None, z=mouth(t)[:, None].astype(np.float32), valid=valid)
    aligned = clip.aligned(offset)
    # frame t now holds the mouth at t - 1.6: frames 0-1 reach before the clip, 101-111 touch the untracked stretch
    assert not aligned.valid[:2].any() and not aligned.valid[101:112].any()
    assert aligned.valid[2:101].all() and aligned.valid[112:].all()
    again, r0 = fractional_lag(estimate, aligned.z[:, 0], aligned.valid)
    assert abs(again) < 0.2 and r0 > 0.99
