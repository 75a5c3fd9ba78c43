"""Bad media gives a MediaError naming the file and saying, in plain words, what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from core.errors import MediaError
from core.media import FrameReader, VideoWriter, load_audio, probe


def media_error(call, path: Path) -> str:
    """Run call(path) expecting a MediaError about `path`; return its message."""
    with pytest.raises(MediaError) as caught:
        call(path)
    message = str(caught.value)
    assert path.name in message
    assert caught.value.path == path
    return message


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("Shot list: intro, smile, wave.\n" * 20)
    for call in (probe, FrameReader, load_audio):
        assert "is not a media file" in media_error(call, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    assert "is empty" in media_error(probe, path)


def test_truncated_download(media_dir, tmp_path):
    """The first 100 KB of a clip whose index (moov) sits at the end: FFmpeg cannot even open it."""
    path = tmp_path / "may_13s_partial.mp4"
    path.write_bytes((media_dir / "may_13s.mp4").read_bytes()[: 100 * 1024])
    for call in (probe, FrameReader):
        assert "is truncated or damaged" in media_error(call, path)


def test_truncated_fast_start_file(tmp_path):
    """Index at the front (as VideoWriter writes): it opens, but lists frames the file no longer holds."""
    whole = tmp_path / "whole.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(whole, 25, (128, 128), preset="ultrafast") as writer:
        for _ in range(50):
            writer.write(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    for call in (probe, FrameReader):
        message = media_error(call, path)
        assert "is truncated or damaged" in message and "50 video frames" in message


def test_wav_as_footage(media_dir):
    assert "has no video stream" in media_error(FrameReader, media_dir / "speech_radio_8s_16k.wav")


def test_footage_without_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert not probe(path).has_audio
    assert "has no audio track" in media_error(load_audio, path)


def test_missing_file(tmp_path):
    path = tmp_path / "gone.mp4"
    for call in (probe, FrameReader, load_audio):
        assert "file not found" in media_error(call, path)
