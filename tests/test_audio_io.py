"""Audio playback: the real sounddevice path through an ALSA file sink, and the clock's safety net."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core.media import FrameReader
from studio.playback import Playback
from studio.state import Footage, StudioState

ROOT = Path(__file__).resolve().parents[1]


def test_sounddevice_plays_into_alsa_file_sink(tmp_path):
    """With a default ALSA device that writes to a file, AudioOutput really streams samples out."""
    sink = tmp_path / "out.raw"
    (tmp_path / ".asoundrc").write_text(textwrap.dedent(f"""\
        pcm.!default {{
          type file
          slave.pcm "null"
          file "{sink}"
          format "raw"
        }}
    """))
    script = textwrap.dedent("""\
        import json, time
        import numpy as np
        from studio.audio_io import AudioOutput
        out = AudioOutput()
        tone = (0.5 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32)
        ok = out.play(tone, 16000, 8000)
        time.sleep(0.3)
        pos = out.position()
        out.stop()
        print(json.dumps({"available": out.available, "reason": out.unavailable_reason, "played": ok,
                          "position": pos, "after_stop": out.position()}))
    """)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if not res["available"] and "PortAudio library not found" in (res["reason"] or ""):
        pytest.fail("libportaudio2 is missing: installer/setup.sh installs it")
    assert res["available"] and res["played"], res
    assert res["position"] > 0 and res["after_stop"] is None
    assert sink.stat().st_size > 0


class RunawayAudio:
    """An output whose clock races ahead, as a free-running sink's does."""

    available = True
    unavailable_reason = None

    def __init__(self):
        self.playing = False

    def play(self, audio, rate, start):
        self.playing = True
        return True

    def position(self):
        return 1000.0 if self.playing else None

    def stop(self):
        self.playing = False


def test_playback_falls_back_to_wall_clock(qtbot, media_dir):
    state = StudioState()
    reader = FrameReader(media_dir / "may_13s.mp4")
    state.set_footage(Footage(reader, np.zeros(16000 * 14, np.float32), 16000), None)
    playback = Playback(state, RunawayAudio())
    notices: list[str] = []
    playback.notice.connect(notices.append)
    playback.play(1.0)
    qtbot.wait(400)
    playback.stop()
    assert 2 <= state.frame <= 20  # ~10 frames in 0.4 s at 25 fps, not the end of the clip
    assert any("system clock" in n for n in notices)
    reader.close()
