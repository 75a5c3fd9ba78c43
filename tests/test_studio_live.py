"""Live mode in the studio: started from the Live panel with a fake microphone, the level meter and the Viewer's
avatar move, a 5 s take is recorded (mp4 with sound and its CSV), and Stop ends it within half a second."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.media import AUDIO_RATE, load_audio, probe

pytestmark = [pytest.mark.gui, pytest.mark.slow]


class FakeMicrophone:
    """A microphone's callback, from a thread of its own: 10 ms chunks of speech in real time."""

    name = "Fake microphone"

    def __init__(self, audio: np.ndarray):
        self.audio = audio
        self._stop = threading.Event()

    def start(self, deliver, failed, end) -> None:
        def play() -> None:
            begun = time.perf_counter()
            for i in range(0, len(self.audio), 160):
                due = begun + (i + 160) / AUDIO_RATE
                if self._stop.wait(max(due - time.perf_counter(), 0.0)):
                    return
                deliver(self.audio[i:i + 160], due)
            end()
        threading.Thread(target=play, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def window(window, qtbot, trained_project, copy_project):
    assert window.open_project(copy_project(trained_project("may_13s.mp4"), "may"))
    qtbot.waitUntil(lambda: window.job is None and window.state.tracking is not None, timeout=20_000)
    window.docks["live"].raise_()
    return window


def test_live_panel_runs_records_a_take_and_stops(window, qtbot, media_dir, tmp_path, artifacts_dir):
    panel = window.panels["live"]
    viewer = window.viewer
    assert panel.start_button.isEnabled() and panel.start_button.text() == "Start"
    assert not panel.record_button.isEnabled()
    speech = load_audio(media_dir / "speech_en_60s_16k.wav", duration=30.0)
    assert panel.start(FakeMicrophone(speech))
    qtbot.waitUntil(lambda: panel.frames_seen >= 10, timeout=60_000)
    assert panel.start_button.text() == "Stop" and panel.record_button.isEnabled()
    first = viewer.live.copy()
    qtbot.waitUntil(lambda: panel.meter.value() > -60, timeout=5_000)          # the level meter moves
    qtbot.waitUntil(lambda: np.abs(viewer.live.astype(np.int16) - first).mean() > 0.5, timeout=5_000)

    take = tmp_path / "take.mp4"
    assert panel.record(take, seconds=5.0)
    qtbot.wait(2_000)
    assert "REC" in panel.readout.text()
    qtbot.waitUntil(lambda: bool(panel.recorded), timeout=10_000)
    assert panel.recorded == [take, take.with_suffix(".csv")]
    qtbot.wait(300)
    assert "fps" in panel.readout.text() and "latency" in panel.readout.text()
    assert window.grab().save(str(artifacts_dir / "studio_live_panel.png"))

    panel.start_button.click()                                                   # Stop
    qtbot.waitUntil(lambda: panel.session is None, timeout=2_000)
    assert panel.stop_seconds is not None and panel.stop_seconds < 0.5
    assert viewer.live is None and panel.start_button.text() == "Start"

    info = probe(take)
    assert abs(info.frame_count - 125) <= 2, info.frame_count
    assert info.audio and abs(info.audio[0].duration - info.frame_count / 25) < 0.1
