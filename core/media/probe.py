"""What a media file holds, checked against what is really in it.

`probe` demuxes every packet once and decodes only the first frame, so the frame count is exact, truncated
files are caught before a long job starts, and variable-frame-rate footage is recognised. The same pass gives
FrameReader its frame index (`scan`). Demuxing reads the whole file without decoding it (benchmarks/media.py
times it).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from core import config
from core.errors import MediaError

# A file FFmpeg cannot open that starts with one of these (offset, bytes) is damaged media; anything else is
# not media at all. (FFmpeg alone cannot tell: it guesses the demuxer from the extension and fails the same way.)
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    *((4, box) for box in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")),  # MP4 / MOV
    (0, b"RIFF"),  # WAV, AVI
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"OggS"),
    (0, b"fLaC"),
    (0, b"ID3"),  # MP3
    (0, b"FLV\x01"),
    (8, b"AIFF"),
    (0, b"caff"),
    (0, b"\x30\x26\xb2\x75"),  # ASF, WMV
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
)

# Rates that variable-frame-rate footage is snapped to when its typical frame interval is this close to one.
_STANDARD_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "100", "120")
)
_SNAP_TOLERANCE = 0.02
# Frames within this fraction of a frame interval of the constant-rate grid count as constant frame rate.
_CFR_JITTER = 0.25
# A frame whose timestamp is this close after an output frame's time counts as showing at it (absorbs
# millisecond-rounded timestamps, as Matroska and FLV store them).
_VFR_SLACK_S = 0.001


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio track. `index` counts audio tracks only, as load_audio's `stream` argument does."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds. Video fields are None/0 when it has no video stream."""

    path: Path
    container: str  # e.g. "mp4", "wav"
    duration: float  # seconds, the longest stream
    fps: Fraction | None  # constant output rate; None when no video stream
    width: int
    height: int
    frame_count: int  # frames FrameReader yields: exact packet count, or round(duration * fps) for VFR
    video_codec: str | None  # e.g. "h264", "mpeg4"
    variable_frame_rate: bool
    audio: tuple[AudioStreamInfo, ...]

    @property
    def has_video(self) -> bool:
        return self.fps is not None

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for project files): path and fps as strings."""
        return config.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MediaInfo:
        return config.from_dict(cls, d)


@dataclass(frozen=True)
class FrameIndex:
    """Where each frame of the video stream is, from demuxing: what FrameReader seeks and decodes by."""

    stream_index: int
    pts: np.ndarray  # int64 [N] presentation timestamps (stream time base), presentation order
    key_pts: np.ndarray  # int64 [K] keyframe presentation timestamps, ascending
    key_dts: np.ndarray  # int64 [K] decode timestamps that seek to them: what most demuxers seek by
    source: np.ndarray | None  # int64 [frame_count] output frame -> source frame; None when identity (CFR)

    def __len__(self) -> int:
        return len(self.pts) if self.source is None else len(self.source)


def probe(path: str | Path) -> MediaInfo:
    """Describe the media file at `path`; MediaError if it is missing, not media, truncated or damaged."""
    path = Path(path)
    with open_media(path) as container:
        return scan(container, path)[0]


def open_media(path: Path) -> av.container.InputContainer:
    """Open `path` with PyAV for decoding, turning every failure into a MediaError that says what is wrong."""
    if not path.exists():
        raise MediaError(path, "file not found")
    if not path.is_file():
        raise MediaError(path, "is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise MediaError(path, f"cannot be read ({e.strerror})") from e
    if not head:
        raise MediaError(path, "is empty (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        if _looks_like_media(head):
            raise MediaError(path, f"is truncated or damaged: FFmpeg cannot open it ({e.strerror})") from e
        raise MediaError(path, "is not a media file (FFmpeg does not recognise its contents)") from e
    for stream in container.streams.video:
        stream.thread_type = "AUTO"  # slice + frame threads; must be set before the decoder opens
    return container


def scan(
    container: av.container.InputContainer, path: Path, require_video: bool = False
) -> tuple[MediaInfo, FrameIndex | None]:
    """Demux every packet of `container` (opened from `path`) and describe it; leaves it seeked to the start."""
    video = _video_stream(container)
    if video is None and require_video:
        raise MediaError(path, "has no video stream")
    audio = list(container.streams.audio)
    if video is None and not audio:
        raise MediaError(path, "is not a media file (it has no video or audio stream)")

    v_pts: list[int] = []
    v_keys: list[tuple[int, int, int]] = []  # (pts, dts, position in v_dts) of keyframes
    v_dts: list[int] = []  # decode timestamps of the video packets in file order, where they carry one
    v_last = (None, 0)  # (pts, duration) of the latest video packet in presentation order
    v_packets = 0  # all video packets, decodable or not
    ends: dict[int, int] = {}  # stream index -> latest pts + duration seen
    try:
        for packet in container.demux([s for s in (video, *audio) if s is not None]):
            if packet.size == 0:
                continue  # PyAV's end-of-stream marker
            if packet.stream is video:
                v_packets += 1
                if packet.dts is not None:
                    v_dts.append(packet.dts)
            if packet.is_discard:
                continue  # outside the edit list: decoded for reference, never shown
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                raise MediaError(path, "is damaged: packets carry no timestamps")
            i = packet.stream.index
            ends[i] = max(ends.get(i, ts), ts + packet.duration)
            if packet.stream is video:
                if not v_keys and not packet.is_keyframe:
                    continue  # before the first keyframe (a cut made without re-encoding): cannot decode
                if v_last[0] is None or ts >= v_last[0]:
                    v_last = (ts, packet.duration)
                v_pts.append(ts)
                if packet.is_keyframe:
                    v_keys.append((ts, ts if packet.dts is None else packet.dts, len(v_dts)))
    except av.FFmpegError as e:
        raise MediaError(path, f"is truncated or damaged: reading stopped after {v_packets} video frames "
                               f"({e.strerror})") from e

    _check_complete(container, path, video, v_packets, ends)
    if video is None and not ends:
        raise MediaError(path, "has no audio samples (its audio track is empty)")
    if video is not None and not v_keys:
        raise MediaError(path, "is truncated or damaged: its video has no keyframe to start decoding from")
    _check_decodes(container, path, video or audio[0])

    audio_info = tuple(
        AudioStreamInfo(
            index=n,
            codec=s.codec_context.name,
            sample_rate=s.codec_context.sample_rate,
            channels=s.codec_context.channels,
            duration=_stream_duration(s, ends),
        )
        for n, s in enumerate(audio)
    )
    index = None
    fps: Fraction | None = None
    vfr = False
    v_duration = 0.0
    if video is not None:
        pts = np.sort(np.asarray(v_pts, dtype=np.int64))
        tb = video.time_base
        fps, vfr = _frame_rate(pts, tb, video)
        v_last_dur = v_last[1] if v_last[1] > 0 else round(1 / (fps * tb))
        v_duration = float((int(pts[-1] - pts[0]) + v_last_dur) * tb)
        source = _vfr_source_map(pts, tb, fps, v_duration) if vfr else None
        keys = np.asarray(sorted(v_keys), dtype=np.int64)  # [K, 3]
        index = FrameIndex(video.index, pts, keys[:, 0], _seek_dts(keys[:, 1], keys[:, 2], v_dts), source)

    info = MediaInfo(
        path=path,
        container=_container_name(container, path),
        duration=max([v_duration, *(a.duration for a in audio_info)]),
        fps=fps,
        width=video.codec_context.width if video else 0,
        height=video.codec_context.height if video else 0,
        frame_count=len(index) if index else 0,
        video_codec=video.codec_context.name if video else None,
        variable_frame_rate=vfr,
        audio=audio_info,
    )
    return info, index


def _looks_like_media(head: bytes) -> bool:
    if any(head[o : o + len(sig)] == sig for o, sig in _SIGNATURES):
        return True
    mpeg_ts = len(head) > 188 and head[0] == head[188] == 0x47  # a sync byte every 188-byte packet
    frame_sync = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # ADTS AAC, MP3
    return mpeg_ts or frame_sync


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The first real video stream (cover art in audio files does not count)."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def _container_name(container: av.container.InputContainer, path: Path) -> str:
    """FFmpeg names demuxers by family ("mov,mp4,m4a,..."): pick the member matching the extension."""
    names = container.format.name.split(",")
    ext = path.suffix.lower().lstrip(".")
    return ext if ext in names else names[0]


def _stream_duration(stream: av.stream.Stream, ends: dict[int, int]) -> float:
    """Seconds the stream plays: the header's figure (which honours edit lists), else what packets span."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    start = stream.start_time or 0
    return float(max(ends.get(stream.index, start) - start, 0) * stream.time_base)


def _check_complete(container, path: Path, video, v_packets: int, ends: dict[int, int]) -> None:
    """MediaError when the header promises more frames or time than the packets present hold."""
    # Only MP4/MOV headers count frames exactly (one entry per sample); AVI's length is in its own time units.
    exact_count = "mov" in container.format.name.split(",")
    if exact_count and video is not None and video.frames and v_packets < video.frames:
        raise MediaError(
            path, f"is truncated or damaged: its header lists {video.frames} video frames, "
                  f"only {v_packets} are present")
    streams = [s for s in container.streams if s.index in ends]
    present = max(float(ends[s.index] * s.time_base) for s in streams) if streams else 0.0
    claimed = max([float(s.duration * s.time_base) for s in streams if s.duration] + [0.0])
    if container.duration:
        claimed = max(claimed, (container.duration + (container.start_time or 0)) / av.time_base)
    if claimed > present * 1.01 + 0.1:
        raise MediaError(
            path, f"is truncated or damaged: its header says {claimed:.2f} s, only {present:.2f} s are present")


def _check_decodes(container, path: Path, stream) -> None:
    """MediaError unless the first frame of `stream` decodes; rewinds the container either way."""
    try:
        container.seek(0, stream=None)
        frame = next(container.decode(stream), None)
        container.seek(0, stream=None)
    except av.FFmpegError as e:
        raise MediaError(path, f"is truncated or damaged: its first frame does not decode ({e.strerror})") from e
    if frame is None:
        raise MediaError(path, "is truncated or damaged: no frame decodes")


def _seek_dts(key_dts: np.ndarray, key_next: np.ndarray, dts: list[int]) -> np.ndarray:
    """Decode timestamps that seek to the keyframes: theirs, or just below any later packet's that is as low.

    Demuxers that bisect by dts (MPEG-PS, MPEG-TS) land on the last packet at or before the target. MPEG-PS
    files whose first frame carries no dts give it its pts, which the next frame's dts repeats: a seek to it
    would land on that next frame, past the keyframe. `key_next` is where the packets after each keyframe
    start in `dts`.
    """
    later_min = np.minimum.accumulate(np.asarray([*dts, np.iinfo(np.int64).max], dtype=np.int64)[::-1])[::-1]
    return np.minimum(key_dts, later_min[key_next] - 1)


def _frame_rate(pts: np.ndarray, tb: Fraction, stream) -> tuple[Fraction, bool]:
    """The constant rate the frames sit on, and whether they stray from it (variable frame rate)."""
    typical = _rate_from_interval(pts, tb)
    candidates = [r for r in (stream.guessed_rate, stream.average_rate, stream.base_rate, typical) if r]
    if len(pts) < 2:
        return Fraction(candidates[0]) if candidates else Fraction(25), False
    t = (pts - pts[0]).astype(np.float64)  # [N] ticks since the first frame
    for rate in candidates:
        rate = Fraction(rate)
        if not 1 <= rate <= 1000:
            continue
        ticks_per_frame = float(1 / (rate * tb))
        if np.abs(t - np.arange(len(t)) * ticks_per_frame).max() <= _CFR_JITTER * ticks_per_frame:
            return rate, False
    return typical or Fraction(stream.average_rate or 25), True


def _rate_from_interval(pts: np.ndarray, tb: Fraction) -> Fraction | None:
    """1 / the median frame interval, snapped to a standard rate when close to one."""
    steps = np.diff(pts)
    steps = steps[steps > 0]
    if not len(steps):
        return None
    rate = 1 / (Fraction(int(np.median(steps))) * tb)
    nearest = min(_STANDARD_RATES, key=lambda standard: abs(rate / standard - 1))
    return nearest if abs(rate / nearest - 1) <= _SNAP_TOLERANCE else rate.limit_denominator(1001)


def _vfr_source_map(pts: np.ndarray, tb: Fraction, fps: Fraction, duration: float) -> np.ndarray:
    """For output frame i at time i/fps, the source frame showing then: the last one starting at or before."""
    n = max(round(duration * fps), 1)
    times = pts[0] + np.arange(n) * float(1 / (fps * tb))  # [n] ticks
    slack = _VFR_SLACK_S / float(tb)
    return np.clip(np.searchsorted(pts, times + slack, side="right") - 1, 0, len(pts) - 1).astype(np.int64)
