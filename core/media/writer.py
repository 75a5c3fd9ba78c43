"""Export video: H.264 + AAC in MP4, written beside the target and renamed into place only when complete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from core.errors import MediaError
from core.fsutil import commit, temp_beside
from core.media.audio import AUDIO_RATE, AudioBuffer, AudioStream

_BT709 = 1  # AVCOL_SPC_BT709 / AVCOL_PRI_BT709 / AVCOL_TRC_BT709
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG


class VideoWriter:
    """Encode RGB frames (libx264, yuv420p, BT.709) and mono audio (AAC) to an MP4 file.

    Nothing appears at `path` until `close()`; `abort()`, or leaving a `with` block on an exception, removes
    the partial file. Audio is encoded alongside the video (interleaved) and the track lasts exactly as long
    as the audio given, whatever the number of frames. ``metadata`` goes into the container as it is, any key
    (MP4 keeps the ones it has no atom for in its ``mdta`` list).
    """

    def __init__(
        self,
        path: str | Path,
        fps: Fraction | float,
        size: tuple[int, int],
        audio: np.ndarray | AudioStream | AudioBuffer | None = None,
        audio_rate: int = AUDIO_RATE,
        crf: int = 18,
        preset: str = "medium",
        metadata: dict[str, str] | None = None,
    ):
        self.path = Path(path)
        self._state = "open"  # then "closed" (file in place) or "aborted" (file deleted)
        self.fps = Fraction(fps).limit_denominator(1001)
        width, height = self.size = (int(size[0]), int(size[1]))
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(
                f"frame size must be even and positive for H.264 (yuv420p), got {width}x{height}: "
                "crop or pad by a pixel")
        if audio is not None and not isinstance(audio, (AudioStream, AudioBuffer)):  # read as it is encoded
            audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
            if audio.ndim != 1:
                raise ValueError(f"audio must be mono [S], got shape {audio.shape}")
        self._audio = audio  # float32 [S], a stream read front to back, a buffer still growing, or None
        self._audio_rate = int(audio_rate)
        self._audio_sent = 0  # samples of `audio` encoded so far
        self._frames = 0
        self._rgb_to_yuv = VideoReformatter()
        try:
            self._tmp = temp_beside(self.path)
        except OSError as e:
            raise MediaError(self.path, f"cannot be written ({e.strerror or e})") from e
        with self._aborting_on_failure():
            self._container = av.open(str(self._tmp), "w", format="mp4",
                                      options={"movflags": "+faststart+use_metadata_tags"})
            self._container.metadata.update(metadata or {})
            self._video = self._container.add_stream(
                "libx264", rate=self.fps, options={"crf": str(crf), "preset": preset})
            ctx = self._video.codec_context
            ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
            ctx.color_range = _LIMITED_RANGE
            self._aac = None
            if audio is not None and (len(audio) or isinstance(audio, AudioBuffer)):
                self._aac = self._container.add_stream("aac", rate=self._audio_rate, layout="mono")
                self._aac.codec_context.open()  # now, so frame_size is known before the first frame

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 [H, W, 3] RGB frame of `size`; ValueError for anything else."""
        if self._state != "open":
            raise ValueError(f"VideoWriter for {self.path.name} is {self._state}")
        w, h = self.size
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (h, w, 3):
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"frame must be uint8 [{h}, {w}, 3] RGB, got {got}")
        with self._aborting_on_failure():
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            yuv = self._rgb_to_yuv.reformat(
                rgb, format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
            yuv.pts = self._frames
            yuv.time_base = 1 / self.fps
            self._container.mux(self._video.encode(yuv))
            self._frames += 1
            # Keep the audio level with the video so the muxer can interleave without buffering.
            self._encode_audio(until=round(self._frames / self.fps * self._audio_rate))

    def close(self) -> Path:
        """Finish encoding (rest of the audio, encoder flushes) and move the file into place; returns `path`."""
        if self._state == "closed":
            return self.path
        if self._state == "aborted":
            raise ValueError(f"VideoWriter for {self.path.name} was aborted")
        if not self._frames:
            self.abort()
            raise ValueError(f"no frames were written to {self.path.name}")
        with self._aborting_on_failure():
            self._container.mux(self._video.encode(None))
            if self._aac is not None:
                self._encode_audio(until=len(self._audio))
                self._container.mux(self._aac.encode(None))
            self._container.close()
            commit(self._tmp, self.path)
        self._state = "closed"
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file; `path` is left as it was. Does nothing once closed."""
        if self._state != "open":
            return
        self._state = "aborted"
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass  # a half-written file that cannot be finished is deleted below either way
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None and self._state == "open":
            self.close()
        else:
            self.abort()

    def _encode_audio(self, until: int) -> None:
        """Encode `audio` up to sample `until` in whole encoder frames (a short one only at the very end)."""
        if self._aac is None:
            return
        size = self._aac.codec_context.frame_size  # 1024 for AAC-LC
        until = min(until, len(self._audio))
        ends = until == len(self._audio) and not getattr(self._audio, "growing", False)  # a short frame only last
        while self._audio_sent < until and (until - self._audio_sent >= size or ends):
            chunk = self._audio[self._audio_sent : self._audio_sent + size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_sent
            frame.time_base = Fraction(1, self._audio_rate)
            self._container.mux(self._aac.encode(frame))
            self._audio_sent += len(chunk)

    @contextmanager
    def _aborting_on_failure(self) -> Iterator[None]:
        """Delete the partial file if the block fails; FFmpeg and disk errors become MediaError."""
        try:
            yield
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise MediaError(self.path, f"cannot be written ({e.strerror or e})") from e
        except BaseException:
            self.abort()
            raise
