"""Live mode (core.live): the baked avatar, the session from a paced sound file to recorded takes, the speech it
drives matching the offline path, and the inputs' failures (no device, a device that stops, a refused rate)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from core.avatar.drive import Driver
from core.audio.features import load_features
from core.expression.arkit_csv import ARKIT_NAMES, from_mediapipe, read_csv
from core.live import input as live_input
from core.live.input import DeviceSource, FileSource, InputDevice, LiveInputError, find_device
from core.live.session import MAX_MARGIN_S, LiveConfig, LiveSession, next_margin, prepare
from core.media import AUDIO_RATE, load_audio, probe, write_wav
from core.project import Project
from core.speech.lipsync import blendshape_track, speech_model
from core.speech.model import live_model
from core.speech.frontend import Frontend
from core.speech.targets import SPEECH_SHAPES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def speech_3s(media_dir, tmp_path_factory) -> Path:
    """The first 3 s of the test speech (a file beside the test, not in the shared media)."""
    path = tmp_path_factory.mktemp("live") / "speech_3s.wav"
    write_wav(path, load_audio(media_dir / "speech_en_60s_16k.wav", duration=3.0), AUDIO_RATE)
    return path


@pytest.fixture(scope="module")
def may(trained_project) -> Project:
    return Project.open(trained_project("may_13s.mp4"))


def test_baked_deformation_follows_the_network(may):
    """The baked bases give the network's Gaussians up to the fit: positions within a small part of the face."""
    driver = Driver.load(may)
    features = load_features(may).features
    exact = [driver.gaussians(driver.lip(driver.model.audio_window(features, i)), driver.views.expr[i])
             for i in (10, 200, 320)]
    kept = driver.bake(features).kept
    assert 0 < len(kept) <= len(driver.model)
    size = float(driver.model.means.detach().std(0).mean())
    for got, i in zip(exact, (10, 200, 320)):
        baked = driver.gaussians(driver.lip(driver.model.audio_window(features, i)), driver.views.expr[i])
        assert float((baked["means"] - got["means"][kept]).abs().mean()) < 0.02 * size
        assert float((baked["scales"] / got["scales"][kept]).log().abs().mean()) < 0.05
        assert torch.equal(baked["colors"], got["colors"][kept])


def _session(project, source, tmp_path, model: str = "live", **config) -> tuple[LiveSession, list]:
    frames: list = []
    session = LiveSession(prepare(project, model), source, LiveConfig(render_threads=1, speech_model=model, **config),
                          on_frame=frames.append)
    return session, frames


@pytest.mark.parametrize("model", ["live", "project"])
def test_live_take_from_a_file_matches_the_offline_speech(may, speech_3s, tmp_path, model):
    """A 3 s file played in real time: frames are shown, the take is an H.264 + AAC mp4 of one frame per 1/25 s
    with the sound, and its CSV's mouth shapes are what the offline lip sync of the same speech model gives for the
    same speech (the live model, or the project's)."""
    session, frames = _session(may, FileSource(speech_3s), tmp_path, model)
    session.record(tmp_path / "take.mp4", tmp_path / "take.csv")
    before = torch.get_num_threads()
    session.start()
    assert session.wait(30.0), "the session did not stop at the file's end"
    session.join()
    assert "ended" in session.message
    assert torch.get_num_threads() == before                 # its threads' one each is not left on the process
    stats = session.stats
    assert stats.frames == len(frames) > 0
    assert stats.frames + stats.dropped >= 70                      # 3 s at 25 fps, less the end's
    info = probe(tmp_path / "take.mp4")
    first, files = session.last_take
    assert files == [tmp_path / "take.mp4", tmp_path / "take.csv"]
    assert info.video_codec == "h264" and info.audio[0].codec == "aac"
    assert abs(info.frame_count - (75 - first)) <= 2 and first <= 2
    assert abs(info.audio[0].duration - info.frame_count / 25) < 0.1
    with av.open(str(tmp_path / "take.mp4")) as c:
        assert c.metadata["synthetic"] == "true" and "Avatar Studio" in c.metadata["comment"]

    take = read_csv(tmp_path / "take.csv", fps=25)
    assert len(take) == info.frame_count
    saved = live_model() if model == "live" else speech_model()
    offline = blendshape_track(saved, Frontend(saved.net.config.frontend), load_audio(speech_3s), Fraction(25))
    columns = [ARKIT_NAMES.index(n[0].upper() + n[1:]) for n in SPEECH_SHAPES]
    shown = np.array([f.k for f in frames])                 # a dropped frame's row repeats the one before
    np.testing.assert_allclose(take.blendshapes[shown - first][:, columns], from_mediapipe(offline)[shown][:, columns],
                               atol=2e-3)


def test_a_device_that_stops_ends_the_session_and_keeps_the_take(may, speech_3s, tmp_path):
    """An input that fails mid-session (unplugged) stops the session with its message; the take so far is kept."""
    audio = load_audio(speech_3s)

    class Unplugged:
        name = "USB microphone"

        def start(self, deliver, failed, end):
            def play():
                begun = time.perf_counter()
                for i in range(0, 2 * AUDIO_RATE, 160):                # 2 s, then the device is gone
                    due = begun + (i + 160) / AUDIO_RATE
                    time.sleep(max(due - time.perf_counter(), 0))
                    deliver(audio[i:i + 160], due)
                failed("the input 'USB microphone' stopped delivering sound (unplugged?)")
            threading.Thread(target=play, daemon=True).start()

        def stop(self):
            pass

    stopped: list[str] = []
    session, frames = _session(may, Unplugged(), tmp_path)
    session.on_stopped = stopped.append
    session.record(tmp_path / "take.mp4")
    session.start()
    assert session.wait(20.0)
    session.join()
    assert stopped == ["the input 'USB microphone' stopped delivering sound (unplugged?)"]
    assert (tmp_path / "take.mp4").is_file()
    assert probe(tmp_path / "take.mp4").frame_count >= len(frames) > 0


def test_no_input_device_is_a_clear_message(monkeypatch):
    monkeypatch.setattr(live_input, "input_devices", lambda: [])
    with pytest.raises(LiveInputError, match="no audio input device found"):
        find_device(None)
    monkeypatch.setattr(live_input, "input_devices", lambda: [InputDevice(3, "Built-in Microphone", 48000, 2)])
    assert find_device("built-in").index == 3
    with pytest.raises(LiveInputError, match="no audio input matches 'usb'.*3: Built-in Microphone"):
        find_device("usb")
    monkeypatch.setattr(live_input, "input_devices", lambda: [InputDevice(4, "USB Audio 2.0", 48000, 1)])
    assert live_input.open_input("USB Audio 2.0").device.index == 4       # a dotted name is a device, not a file


def test_a_refused_sample_rate_is_a_clear_message(monkeypatch):
    class RefusesAll:
        @staticmethod
        def check_input_settings(**kwargs):
            raise Exception(f"Invalid sample rate {kwargs['samplerate']}")

    monkeypatch.setattr(live_input, "_sounddevice", lambda: RefusesAll)
    source = DeviceSource(InputDevice(1, "Odd interface", 11025, 1))
    with pytest.raises(LiveInputError, match="records neither at 16000 Hz nor at its default 11025 Hz"):
        source.start(lambda c, t: None, lambda m: None, lambda: None)


def test_the_live_speech_model_is_shipped_with_its_card_and_looks_ahead_less():
    live, offline = live_model(), speech_model()
    assert live.net.config.lookahead_s < offline.net.config.lookahead_s
    assert live.card["validation"]["median_speaker_r"] > 0.6 and live.card["trained_on"]
    assert live.net.config.outputs == offline.net.config.outputs       # the same avatar calibration reads both


def test_a_file_without_sound_is_refused(media_dir, tmp_path):
    with pytest.raises(LiveInputError, match="does not exist"):
        FileSource(tmp_path / "missing.wav")


def test_cli_live_records_a_take(may, speech_3s, tmp_path):
    out = tmp_path / "take.mp4"
    done = subprocess.run([sys.executable, "-m", "core.cli", "live", "--project", str(may.root), "--input",
                           str(speech_3s), "--record", str(out), "--csv", str(tmp_path / "take.csv")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "frames shown" in done.stdout and out.is_file() and (tmp_path / "take.csv").is_file()
    bad = subprocess.run([sys.executable, "-m", "core.cli", "live", "--project", str(may.root), "--input",
                          str(tmp_path / "nothing.wav")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "does not exist" in bad.stderr


def test_the_render_margin_grows_at_once_and_shrinks_slowly():
    quick = [0.03] * 49 + [0.05]
    assert next_margin(0.1, quick[:9]) == 0.1                        # too few frames known to judge
    shrunk = next_margin(0.1, quick)
    assert shrunk == pytest.approx(0.099)                             # down a millisecond a frame
    margin = 0.1
    for _ in range(200):
        margin = next_margin(margin, quick)
    assert margin == pytest.approx(np.percentile(quick, 95) + 0.01)   # settles on the slow frames' lag + 10 ms
    slow = quick[10:] + [0.2] * 10
    assert next_margin(margin, slow) == pytest.approx(0.21)           # a slow spell: covered at once
    assert next_margin(margin, [1.0] * 50) == MAX_MARGIN_S            # never more than the cap


def test_a_session_refuses_a_config_for_another_speech_model():
    avatar = SimpleNamespace(model="project")          # prepared for the project's model
    with pytest.raises(ValueError, match="prepared for the project speech model"):
        LiveSession(avatar, None, LiveConfig(speech_model="live"))
