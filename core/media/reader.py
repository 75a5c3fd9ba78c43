"""Frame-exact random access to video: frame i is always the same pixels, however it is reached.

Timestamps come from demuxing the whole file once (probe.scan), never from arithmetic on the frame rate, so
B-frames, edit lists and variable frame rates cannot shift a frame by one. Reads close ahead of the decoder
continue decoding; others seek to the keyframe at or before the target and decode up to it.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import av
import numpy as np

from core.errors import MediaError
from core.media.probe import FrameIndex, MediaInfo, open_media, scan

# Seeking costs about this many decoded frames (demuxer seek, decoder flush, refilling frame threads).
_SEEK_COST_FRAMES = 8
# When decoding from the chosen keyframe misses the target, retry from this many earlier ones, then the start.
_SEEK_RETRIES = 2


class FrameReader:
    """Frames of one video file by index, as uint8 [H, W, 3] RGB. Thread-safe: reads share one decoder.

    Variable-frame-rate footage reads as constant `fps`: frame i is the source frame showing at i / fps.
    Arrays from `read` are read-only and shared with the cache; copy one before drawing on it.
    """

    def __init__(self, path: str | Path, cache_bytes: int = 256 * 2**20):
        self.path = Path(path)
        self._container = open_media(self.path)
        try:
            info, index = scan(self._container, self.path, require_video=True)
        except BaseException:
            self._container.close()
            raise
        assert index is not None and info.fps is not None
        self.info: MediaInfo = info
        self.fps = info.fps
        self.size = (info.width, info.height)
        self._index: FrameIndex = index
        self._stream = self._container.streams[index.stream_index]
        self._frames: Iterator[av.VideoFrame] | None = None  # decoder output since the last seek
        self._pos = -1  # source frame the decoder returned last; -1 when unknown
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()  # source frame -> RGB, least recent first
        self._cache_used = 0
        self._cache_limit = cache_bytes
        self._lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        return len(self._index)

    def read(self, index: int) -> np.ndarray:
        """Frame `index` (negative counts from the end) as uint8 [H, W, 3] RGB; IndexError out of range."""
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {index} is out of range for {self.path.name} ({n} frames)")
        src = i if self._index.source is None else int(self._index.source[i])
        with self._lock:
            if self._closed:
                raise ValueError(f"FrameReader for {self.path.name} is closed")
            rgb = self._cache.get(src)
            if rgb is None:
                rgb = self._decode(src)
                rgb.flags.writeable = False
                self._remember(src, rgb)
            else:
                self._cache.move_to_end(src)
            return rgb

    __getitem__ = read

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every frame in order from a decoder of its own: no seeks, no cache, other reads undisturbed."""
        pts = self._index.pts
        order = range(len(pts)) if self._index.source is None else self._index.source
        container = open_media(self.path)
        i = 0
        try:
            _, frames = _frames_from_keyframe(container.demux(container.streams[self._index.stream_index]))
            frame, ts = None, None  # last decoded frame and its timestamp
            for i, src in enumerate(order):
                target = int(pts[src])
                while ts is None or ts < target:
                    frame = next(frames, None)
                    if frame is None:
                        break
                    ts = _timestamp(frame)
                if frame is not None and ts == target:
                    yield frame.to_ndarray(format="rgb24")
                else:  # the decoder lost this frame: the random-access path retries, or explains
                    yield self.read(i).copy()
        except av.FFmpegError as e:
            raise MediaError(self.path, f"is damaged: decoding failed near frame {i} ({e.strerror})") from e
        finally:
            container.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._frames = None
            self._cache.clear()
            self._cache_used = 0
            self._container.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, src: int) -> np.ndarray:
        """Decode source frame `src`: onward from the decoder's position when that is cheaper than seeking."""
        pts = self._index.pts
        key = max(int(np.searchsorted(self._index.key_pts, pts[src], side="right")) - 1, 0)
        key_pos = int(np.searchsorted(pts, self._index.key_pts[key]))
        try:
            # Decoding on beats seeking while the decoder is already at (or about) the keyframe a seek would use.
            if self._frames is not None and key_pos - _SEEK_COST_FRAMES <= self._pos < src:
                rgb = self._decode_until(src)
                if rgb is not None:
                    return rgb
            # A seek can land after the keyframe asked for (demuxers that bisect by timestamp, such as
            # MPEG-TS), or the target can need an earlier one (open GOPs): retry from earlier keyframes.
            for k in dict.fromkeys([*range(key, max(key - _SEEK_RETRIES, 0) - 1, -1), 0]):
                if self._seek(k):
                    rgb = self._decode_until(src)
                    if rgb is not None:
                        return rgb
        except av.FFmpegError as e:
            self._frames = None
            raise MediaError(self.path, f"is damaged: decoding failed near frame {src} ({e.strerror})") from e
        raise MediaError(self.path, f"is damaged: frame {src} does not decode")

    def _seek(self, key: int) -> bool:
        """Position the decoder at keyframe `key` or an earlier one; False if the demuxer landed later.

        Demuxers disagree on what a seek timestamp means: MP4 and Matroska find the keyframe by its pts (MP4
        with an edit list finds nothing by dts), MPEG-TS bisects by dts and lands on any packet. Try both.
        """
        key_pts = int(self._index.key_pts[key])
        for ts in dict.fromkeys([key_pts, int(self._index.key_dts[key])]):
            self._container.seek(ts, stream=self._stream, backward=True)
            start, self._frames = _frames_from_keyframe(self._container.demux(self._stream))
            self._pos = -1
            if start is not None and start <= key_pts:
                return True
        return False

    def _decode_until(self, src: int) -> np.ndarray | None:
        """Decode on to source frame `src`; None if the decoder passes it or ends without producing it."""
        pts = self._index.pts
        target = int(pts[src])
        for frame in self._frames:
            ts = _timestamp(frame)
            self._pos = int(np.searchsorted(pts, ts, side="right")) - 1
            if ts == target:
                return frame.to_ndarray(format="rgb24")
            if ts > target:
                return None
        self._frames = None  # the decoder is drained; the next read seeks
        return None

    def _remember(self, src: int, rgb: np.ndarray) -> None:
        if rgb.nbytes > self._cache_limit:
            return
        self._cache[src] = rgb
        self._cache_used += rgb.nbytes
        while self._cache_used > self._cache_limit:
            self._cache_used -= self._cache.popitem(last=False)[1].nbytes


def _frames_from_keyframe(packets: Iterator[av.Packet]) -> tuple[int | None, Iterator[av.VideoFrame]]:
    """Decode `packets` from the first keyframe on (what precedes it cannot decode correctly, and MPEG-4
    Part 2 would return it as garbage frames); returns that keyframe's timestamp (None if none) and the frames."""
    for packet in packets:
        if packet.size and packet.is_keyframe:
            return (packet.pts if packet.pts is not None else packet.dts), _decode(chain([packet], packets))
    return None, iter(())


def _decode(packets: Iterator[av.Packet]) -> Iterator[av.VideoFrame]:
    for packet in packets:
        yield from packet.decode()  # PyAV's final empty packet flushes the decoder


def _timestamp(frame: av.VideoFrame) -> int:
    """The decoded frame's presentation time, as the index records it (dts where a stream has no pts)."""
    return frame.pts if frame.pts is not None else frame.dts
