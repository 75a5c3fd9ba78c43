"""Media I/O against real clips: frame-exact random access, audio at 16 kHz, export round trip, VFR, atomicity."""

from __future__ import annotations

import json
import random
import struct
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.media import AUDIO_RATE, FrameReader, MediaInfo, VideoWriter, load_audio, probe, write_wav

CLIPS = {"may_13s.mp4": 331, "katie_8s.mp4": 200}  # file -> frame count (H.264 with B-frames, MPEG-4 Part 2)


def decode_sequentially(path: Path) -> list[np.ndarray]:
    """Every frame, decoded front to back by a fresh PyAV decoder: the ground truth for random access."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def wav_duration(path: Path) -> float:
    """Seconds of audio in a WAV, from its RIFF header (Python's wave module rejects WAVE_FORMAT_EXTENSIBLE)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pos, rate, block_align = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            rate, block_align = struct.unpack("<I", data[pos + 12 : pos + 16])[0], data[pos + 20]
        elif chunk == b"data":
            return min(size, len(data) - pos - 8) // block_align / rate
        pos += 8 + size + (size & 1)
    raise AssertionError(f"{path.name} has no data chunk")


def remux(src: Path, dst: Path, skip: int = 0) -> None:
    """Copy the video stream of `src` into `dst` (container from its extension) without re-encoding,
    leaving out the first `skip` packets."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        out = target.add_stream_from_template(source.streams.video[0])
        for n, packet in enumerate(source.demux(video=0)):
            if packet.size and n >= skip:
                packet.stream = out
                target.mux(packet)


def make_clip(path: Path, frames: list[np.ndarray], starts_ms: list[int], end_ms: int) -> None:
    """An H.264 MP4 (no audio) showing frames[k] from starts_ms[k]; the last one lasts until end_ms."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, (rgb, start) in enumerate(zip(frames, starts_ms)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = start, Fraction(1, 1000)
            frame.duration = (starts_ms[k + 1] if k + 1 < len(starts_ms) else end_ms) - start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module", params=sorted(CLIPS))
def clip(request, media_dir):
    """(path, expected frame count, sequentially decoded frames) for each real clip."""
    path = media_dir / request.param
    return path, CLIPS[request.param], decode_sequentially(path)


@pytest.mark.slow
def test_random_access_is_frame_exact(clip):
    path, count, frames = clip
    assert len(frames) == count
    assert probe(path).frame_count == count
    rng = random.Random(1234)
    indices = [0, count - 1, *rng.sample(range(1, count - 1), 48)]
    rng.shuffle(indices)
    with FrameReader(path) as reader:
        assert len(reader) == count
        assert reader.size == (frames[0].shape[1], frames[0].shape[0])
        for i in indices:
            got = reader.read(i)
            assert got.dtype == np.uint8 and got.shape == frames[i].shape
            assert np.array_equal(got, frames[i]), f"{path.name}: frame {i} differs from sequential decode"
        assert np.array_equal(reader[-1], frames[-1])
        with pytest.raises(IndexError):
            reader.read(count)


def test_iteration_matches_sequential_decode(clip):
    path, count, frames = clip
    with FrameReader(path) as reader:
        n = 0
        for i, got in enumerate(reader):
            assert np.array_equal(got, frames[i]), f"{path.name}: iterated frame {i} differs"
            n += 1
        assert n == count


def test_sequential_reads_and_short_scrubs_do_not_seek(clip, monkeypatch):
    path, count, frames = clip
    with FrameReader(path, cache_bytes=0) as reader:
        seeks = []
        real_seek = reader._seek

        def counting_seek(key: int) -> bool:
            seeks.append(key)
            return real_seek(key)

        monkeypatch.setattr(reader, "_seek", counting_seek)
        for i in range(60):
            reader.read(i)
        for i in (63, 65, 70):  # short forward scrub
            assert np.array_equal(reader.read(i), frames[i])
        assert len(seeks) == 1  # only the first read positions the decoder


def test_seek_landing_after_the_target_retries_from_an_earlier_keyframe(media_dir, monkeypatch):
    path = media_dir / "katie_8s.mp4"  # MPEG-4 Part 2, a keyframe every 12 frames
    with av.open(str(path)) as container:
        truth = next(f for k, f in enumerate(container.decode(video=0)) if k == 30).to_ndarray(format="rgb24")
    with FrameReader(path, cache_bytes=0) as reader:
        calls = []
        real_seek = reader._seek

        def late_seek(key: int) -> bool:  # the first seek lands one keyframe late
            calls.append(key)
            return real_seek(key + 1 if len(calls) == 1 else key)

        monkeypatch.setattr(reader, "_seek", late_seek)
        assert np.array_equal(reader.read(30), truth)
        assert calls == [2, 1]


def test_clip_cut_without_reencoding_starts_at_its_first_keyframe(media_dir, tmp_path):
    """Packets before the first keyframe cannot decode (H.264 drops them): they are not frames."""
    path = tmp_path / "cut.mp4"
    remux(media_dir / "may_13s.mp4", path, skip=100)  # its keyframes are packets 0 and 250
    frames = decode_sequentially(path)
    assert probe(path).frame_count == len(frames) == 81
    with FrameReader(path) as reader:
        assert len(reader) == 81
        for i in (80, 0, 40):
            assert np.array_equal(reader.read(i), frames[i])


@pytest.mark.parametrize("clip_name, container", [("may_13s.mp4", "ts"), ("katie_8s.mp4", "mkv")])
def test_random_access_in_other_containers(media_dir, tmp_path, clip_name, container):
    """MPEG-TS seeks by bisecting dts and lands on any packet; Matroska seeks by cues: both stay exact."""
    path = tmp_path / f"{Path(clip_name).stem}.{container}"
    remux(media_dir / clip_name, path)
    frames = decode_sequentially(path)
    with FrameReader(path, cache_bytes=0) as reader:
        assert len(reader) == len(frames) == CLIPS[clip_name]
        for i in random.Random(7).sample(range(len(frames)), 20):
            assert np.array_equal(reader.read(i), frames[i]), f"{path.name}: frame {i}"


def test_mpeg_program_stream_reads_every_frame(corpus_dir):
    """GRID's MPEG-1 program streams: the first frame's dts is repeated by the next frame's, so a seek to it
    lands past it; the index seeks just below it instead."""
    path = corpus_dir / "clips" / "lipnet__GRID_sbwe5n.mpg"
    frames = decode_sequentially(path)
    with FrameReader(path, cache_bytes=0) as reader:
        iterated = list(reader)
        assert len(iterated) == len(reader) == len(frames)
        assert all(np.array_equal(a, b) for a, b in zip(iterated, frames))
        indices = [0, *random.Random(5).sample(range(1, len(reader)), 4)]  # frame 0 is the one seeks missed
        for i in indices:
            assert np.array_equal(reader.read(i), iterated[i]), f"{path.name}: frame {i}"


@pytest.mark.slow
def test_concurrent_reads_are_exact(clip):
    path, count, frames = clip
    errors: list[str] = []
    with FrameReader(path, cache_bytes=8 * 2**20) as reader:

        def worker(seed: int) -> None:
            for i in random.Random(seed).choices(range(count), k=8):
                if not np.array_equal(reader.read(i), frames[i]):
                    errors.append(f"frame {i}")

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors


def test_cached_frames_are_read_only(media_dir):
    with FrameReader(media_dir / "may_13s.mp4") as reader:
        frame = reader.read(10)
        assert frame is reader.read(10)
        with pytest.raises(ValueError):
            frame[0, 0, 0] = 1


def test_probe_describes_real_clips(media_dir):
    info = probe(media_dir / "may_13s.mp4")
    assert (info.container, info.video_codec, info.fps, info.width, info.height) == ("mp4", "h264", 25, 512, 512)
    assert not info.variable_frame_rate and info.has_video and info.has_audio
    assert info.audio[0].codec == "aac" and info.audio[0].sample_rate == 16000
    assert probe(media_dir / "katie_8s.mp4").video_codec == "mpeg4"
    assert MediaInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert info.to_dict()["fps"] == "25/1"

    wav = probe(media_dir / "speech_zh_8s_48k.wav")
    assert not wav.has_video and wav.fps is None and wav.frame_count == 0
    assert wav.audio[0].sample_rate == 48000


def test_every_wav_loads_as_16k_mono_with_its_duration(media_dir):
    wavs = sorted(media_dir.glob("*.wav"))
    assert wavs
    for path in wavs:
        audio = load_audio(path)
        truth = wav_duration(path)
        assert audio.dtype == np.float32 and audio.ndim == 1, path.name
        assert abs(len(audio) / AUDIO_RATE - truth) <= 0.001, f"{path.name}: {len(audio)} samples, {truth} s"
        assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.01, path.name


def test_load_audio_from_footage(media_dir):
    path = media_dir / "may_13s.mp4"
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / AUDIO_RATE - probe(path).audio[0].duration) <= 0.001
    assert np.abs(audio).max() > 0.01


@pytest.mark.parametrize("clip, rate", [("may_13s.mp4", 16000), ("speech_en_60s_16k.wav", 48000)])
def test_load_audio_range_is_the_same_samples_as_the_whole(media_dir, clip, rate):
    path = media_dir / clip
    whole = load_audio(path, rate)
    for start, duration in ((0.0, 2.0), (3.25, 1.5), (len(whole) / rate - 0.5, 2.0)):   # the last one runs past
        part = load_audio(path, rate, start=start, duration=duration)
        first = round(start * rate)
        expected = np.zeros(round(duration * rate), np.float32)
        tail = whole[first:first + len(expected)]
        expected[:len(tail)] = tail
        assert np.array_equal(part, expected), (start, duration)


def test_an_audio_stream_read_front_to_back_is_the_range(media_dir):
    from core.media import AudioStream

    path, rate = media_dir / "speech_en_60s_16k.wav", 48000
    expected = load_audio(path, rate, start=10.0, duration=52.0)   # runs 2 s past the end: zeros
    with AudioStream(path, rate, 10.0, 52.0) as stream:
        assert len(stream) == len(expected)
        edges = [0, 1, 1024, 50_000, 1_000_000, 2_400_000, len(expected)]
        got = np.concatenate([stream[a:b] for a, b in zip(edges, edges[1:])])
        with pytest.raises(ValueError, match="front to back"):
            stream[0:10]
    assert np.array_equal(got, expected)


def test_write_wav_round_trip(tmp_path):
    t = np.arange(AUDIO_RATE, dtype=np.float32) / AUDIO_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "tone.wav"
    write_wav(path, tone)
    assert [p.name for p in tmp_path.iterdir()] == ["tone.wav"]
    back = load_audio(path)
    assert len(back) == len(tone)
    assert np.abs(back - tone).max() <= 1.5 / 32767


def test_export_round_trip(media_dir, tmp_path, artifacts_dir):
    source_path = media_dir / "may_13s.mp4"
    audio = load_audio(source_path)[: 4 * AUDIO_RATE]  # 100 frames at 25 fps
    out = tmp_path / "export.mp4"
    with FrameReader(source_path) as reader:
        source = [reader.read(i) for i in range(100)]
        with VideoWriter(out, reader.fps, reader.size, audio=audio) as writer:
            for frame in source:
                writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["export.mp4"]

    info = probe(out)
    assert info.video_codec == "h264" and info.frame_count == 100 and info.fps == 25
    assert info.audio[0].codec == "aac"
    assert abs(info.audio[0].duration - 4.0) <= 0.040
    assert abs(len(load_audio(out)) / AUDIO_RATE - 4.0) <= 0.040

    with FrameReader(out) as exported:
        frames = list(exported)
        assert np.array_equal(exported.read(50), frames[50])
    assert len(frames) == 100
    diffs = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, source)]
    assert max(diffs) < 3, f"exported frames differ from the source by up to {max(diffs):.2f} levels"
    assert cv2.imwrite(str(artifacts_dir / "media_export_frame50.png"), cv2.cvtColor(frames[50], cv2.COLOR_RGB2BGR))


def test_export_audio_longer_than_video_keeps_its_duration(tmp_path):
    audio = np.zeros(int(2.5 * AUDIO_RATE) + 123, dtype=np.float32)
    out = tmp_path / "short.mp4"
    with VideoWriter(out, Fraction(30000, 1001), (64, 48), audio=audio, preset="ultrafast") as writer:
        for _ in range(10):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    info = probe(out)
    assert info.frame_count == 10 and info.fps == Fraction(30000, 1001)
    assert abs(info.audio[0].duration - len(audio) / AUDIO_RATE) <= 0.002


def test_variable_frame_rate_reads_as_constant_rate(tmp_path):
    durations = [40, 40, 80, 20, 20, 40, 120, 40, 60, 20, 40, 40, 40, 100, 20, 40]  # ms; median 40 -> 25 fps
    starts = [sum(durations[:k]) for k in range(len(durations))]
    end = sum(durations)
    colours = [np.full((64, 64, 3), (12 * k, 255 - 12 * k, 128), np.uint8) for k in range(len(durations))]
    path = tmp_path / "vfr.mp4"
    make_clip(path, colours, starts, end)

    info = probe(path)
    assert info.variable_frame_rate and info.fps == 25
    with FrameReader(path) as reader:
        expected_count = round(end / 1000 * reader.fps)
        assert len(reader) == info.frame_count == expected_count
        # Output frame i is at i * 40 ms; it shows the last source frame that started at or before then.
        expected = [max(k for k, s in enumerate(starts) if s <= i * 40) for i in range(expected_count)]

        def identify(rgb: np.ndarray) -> int:
            return int(np.argmin([np.abs(rgb.astype(int) - c).mean() for c in colours]))

        assert [identify(f) for f in reader] == expected
        assert [identify(reader.read(i)) for i in reversed(range(len(reader)))] == expected[::-1]


def test_abort_and_exception_leave_nothing(tmp_path):
    frame = np.zeros((64, 64, 3), np.uint8)
    out = tmp_path / "export.mp4"
    with pytest.raises(RuntimeError, match="cancelled"):
        with VideoWriter(out, 25, (64, 64), audio=np.zeros(AUDIO_RATE, np.float32)) as writer:
            writer.write(frame)
            raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []

    writer = VideoWriter(out, 25, (64, 64))
    writer.write(frame)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_the_previous_export(tmp_path):
    out = tmp_path / "export.mp4"
    with VideoWriter(out, 25, (64, 64), preset="ultrafast") as writer:
        writer.write(np.zeros((64, 64, 3), np.uint8))
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 25, (64, 64), preset="ultrafast") as writer:
            writer.write(np.full((64, 64, 3), 255, np.uint8))
            raise KeyboardInterrupt
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["export.mp4"]


def test_writer_rejects_bad_frames_and_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 25, (63, 64))
    with VideoWriter(tmp_path / "x.mp4", 25, (64, 64)) as writer:
        for bad in (np.zeros((64, 64, 3), np.float32), np.zeros((32, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)):
            with pytest.raises(ValueError, match="uint8"):
                writer.write(bad)
        writer.abort()
    assert list(tmp_path.iterdir()) == []
