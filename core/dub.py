"""Dubbing: new speech -> the avatar speaking it over the source footage -> a finished H.264 + AAC mp4.

Head pose and background come from the source footage; the upper face from its tracked blendshapes, the project's
edited ones, or the Expression Generator for the new speech; the mouth from the new speech through the project's
audio encoder and the avatar. Each face is rendered, blurred a little and blended into the full-resolution source
frame through the feathered face mask (Portrait-Sync); a trained Torso Restorer then rebuilds the chin and neck
band where the new jaw and the footage's differ. When the speech outlasts the footage, the footage runs forward and
back (ping-pong), so the head never jumps and no frame shows twice in a row.

The file is written beside its target and renamed into place only when complete: a cancel, a full disk or any
error leaves no partial file. Every dub says what it is: container metadata marks it synthetic and made with
Avatar Studio, and a visible watermark (on unless the config turns it off) says so on the picture.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from core import __version__
from core.audio.features import load_encoder
from core.avatar.drive import Driver
from core.avatar.torso import current_torso, restore
from core.avatar.views import expression_of
from core.compose.portrait import PortraitConfig
from core.compose.watermark import stamp
from core.config import to_dict
from core.errors import AvatarStudioError, MediaError
from core.expression.edits import edited_performance
from core.expression.generator import GeneratorConfig, for_speech, subject_range
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.media import AUDIO_RATE, AudioStream, FrameReader, MediaInfo, VideoWriter, load_audio, probe
from core.options import option
from core.pipeline import require_current
from core.project import Project
from core.tracking.track import load_tracking

SIZES: dict[str, int | None] = {"source": None, "512": 512, "1080p": 1080}  # output height; None: the footage's
EXPRESSIONS = ("edited", "footage", "generated")  # where the dub's upper face comes from
_MAX_AUDIO_RATE = 48000  # the output's AAC rate is the speech's own, between 16 and 48 kHz
REVERSE_BLOCK = 64  # frames decoded forward at a time for footage played backward (ping-pong)
# The render blurred by 0.5 px to the footage's softness before the feathered blend.
DUB_PORTRAIT = PortraitConfig(blur=0.5)


@dataclass(frozen=True)
class DubConfig:
    start: float = option(0.0, "start this many seconds into the speech", metavar="S")
    end: float | None = option(None, "end this many seconds into the speech (default: its end)", metavar="S")
    source_start: int = option(0, "the footage frame the dub begins on", metavar="FRAME")
    size: str = option("source", "output height: the footage's, 512 px or 1080 px; the width keeps the aspect",
                       choices=tuple(SIZES))
    crf: int = option(18, "H.264 quality, 0-51, lower is better", metavar="Q")
    preset: str = "medium"       # x264's speed against file size
    watermark: bool = option(True, "no visible AI-generated mark (the file's metadata still says it is synthetic)")
    expression: str = option("edited", "the upper face: the footage's (looped with it), the project's edited one, or "
                                       "generated from the speech (brows and blinks)", choices=EXPRESSIONS)
    expression_seed: int = option(0, "the generated upper face's random draw", metavar="N")
    keep_in_range: bool = option(True, "do not rebuild a generated upper face from the subject's own expression "
                                       "codebook (what this avatar has seen)")
    torso: bool = option(True, "leave the chin and neck band as blended, even where the project has a trained "
                               "Torso Restorer")
    portrait: PortraitConfig = DUB_PORTRAIT

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"output size {self.size!r} is not one of {', '.join(SIZES)}")
        if self.expression not in EXPRESSIONS:
            raise ValueError(f"the upper face {self.expression!r} is not one of {', '.join(EXPRESSIONS)}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ValueError(f"the time range {self.start:g} s .. {self.end} s is empty")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be within 0..51, got {self.crf}")


@dataclass
class DubResult:
    path: Path
    frames: int
    seconds: float                  # the dub's duration
    fps: float                      # frames made per second of wall time, end to end
    notes: list[str] = field(default_factory=list)  # what the user should know about the input


def pingpong(k: np.ndarray | int, n: int) -> np.ndarray:
    """The footage frame shown at dub frame ``k`` for footage of ``n`` frames: 0, 1, .., n-1, n-2, .., 1, 0, 1, .."""
    k = np.asarray(k)
    if n <= 1:
        return np.zeros_like(k)
    period = 2 * (n - 1)
    m = k % period
    return np.where(m < n, m, period - m)


def output_size(source: tuple[int, int], size: str) -> tuple[int, int]:
    """(W, H) of the dub for footage of ``source`` (W, H): both even (H.264's 4:2:0), the footage's aspect."""
    w, h = source
    height = SIZES[size] or h
    return max(2, round(w * height / h / 2) * 2), max(2, height - height % 2)


@dataclass
class DubJob:
    """Dub the project's footage with the speech in ``audio`` (any file core.media reads; a video's audio
    track is used, and the result's notes say so) into ``out`` (.mp4)."""

    project: Project
    audio: Path
    out: Path
    config: DubConfig = DubConfig()
    name: str = "Dub"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> DubResult:
        begun = time.perf_counter()
        config, project = self.config, self.project
        audio_path, out = Path(self.audio), Path(self.out)
        footage = project.checked_footage()
        require_current(project, "avatar")   # before the speech is read: a stale avatar ends the dub at once
        check_output(out, [Path(footage.path), audio_path])
        notes: list[str] = []
        info = speech_info(audio_path)
        if info.has_video:
            notes.append(f"{audio_path.name} is a video: its audio track is used")
        rate = min(max(info.audio[0].sample_rate, AUDIO_RATE), _MAX_AUDIO_RATE)  # the output's audio rate
        fps = Fraction(footage.info["fps"])
        duration = info.audio[0].duration
        end = duration if config.end is None else min(config.end, duration)
        if config.start >= end:
            raise AvatarStudioError(f"the time range starts at {config.start:g} s, and {audio_path.name} ends at "
                                    f"{duration:.2f} s")
        n = max(1, round((end - config.start) * fps))

        progress(Progress(0.0, "Reading the speech"))
        # Only the dubbed range is decoded, and the output's sound as it is encoded: memory does not grow with
        # the speech file's length.
        seconds = float(n / fps)
        speech = load_audio(audio_path, AUDIO_RATE, start=config.start, duration=seconds)     # [n/fps*16k]
        features = load_encoder(project).features(speech, n, fps, span(progress, 0.0, 0.05), cancel)  # [n,D]
        tracking = load_tracking(project)
        driver = Driver.load(project, tracking)
        driver.portrait = config.portrait
        frames = len(driver.views)
        edited = edited_performance(project, tracking, cancel=cancel)
        source = pingpong(np.arange(n) + config.source_start, frames)                          # [n]
        restorer = current_torso(project) if config.torso else None
        if restorer is not None:
            notes.append("the Torso Restorer rebuilds the chin and neck band")
        if config.expression == "footage":
            expr = driver.views.expr[source]                                                   # [n,E]
        elif config.expression == "generated":
            expr = for_speech(speech, tracking, n, fps, GeneratorConfig(seed=config.expression_seed), cancel)  # [n,E]
            notes.append(f"the brows and blinks are generated from {audio_path.name} (seed {config.expression_seed})")
            if config.keep_in_range:
                expr = subject_range(expr, tracking, cancel)
        else:
            expr = expression_of(edited.blendshapes)[source]                                   # [n,E]
            notes += edited.notes
        del tracking
        faceless = int((~driver.views.valid[source]).sum())
        if faceless:
            notes.append(f"{faceless} of its frames show footage without a face in view: passed through unchanged")

        metadata = {
            "comment": f"Synthetic video: the face and lips were generated by Avatar Studio {__version__} "
                       f"to speak {audio_path.name}",
            "synthetic": "true",
            "generator": f"Avatar Studio {__version__}",
            "avatar_studio": json.dumps({"project": project.name, "speech": audio_path.name,
                                         "dub": to_dict(config)}, sort_keys=True),
        }
        started = time.perf_counter()
        with FrameReader(footage.path, cache_bytes=0) as reader, \
                (nullcontext(speech) if rate == AUDIO_RATE else
                 AudioStream(audio_path, rate, config.start, seconds)) as sound, \
                VideoWriter(out, fps, output_size(reader.size, config.size), sound, rate, config.crf, config.preset,
                            metadata) as video:
            for k, (s, frame) in enumerate(in_order(reader, source.tolist())):
                cancel.check(self.name)
                if driver.views.valid[s]:  # no face in view: the footage's frame as it is, never a render over it
                    frame = driver.frame(frame, s, driver.lip(driver.model.audio_window(features, k)), expr[k],
                                         (edited.rot[s], edited.trans[s]) if edited.posed else None)
                    if restorer is not None:
                        frame = restore(restorer[0], frame, driver.views.landmarks[s], restorer[1])
                if video.size != reader.size:
                    shrink = video.size[1] < reader.size[1]
                    frame = cv2.resize(frame, video.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
                video.write(stamp(frame) if config.watermark else frame)
                elapsed = time.perf_counter() - started
                rate_now = (k + 1) / elapsed
                progress(Progress(0.05 + 0.95 * (k + 1) / n,
                                  f"Frame {k + 1}/{n} · {rate_now:.1f} fps · {_clock((n - k - 1) / rate_now)} left",
                                  {"frame": k + 1, "frames": n, "fps": rate_now}))
            cancel.check(self.name)
        progress(Progress(1.0, f"Dubbed {n} frames ({float(n / fps):.1f} s) into {out.name}"))
        return DubResult(out, n, float(n / fps), n / (time.perf_counter() - begun), notes)


def in_order(reader: FrameReader, source: list[int], block: int = REVERSE_BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """(source frame, its picture) for each of ``source``'s frames in turn. A run played backward (ping-pong) is
    decoded forward ``block`` frames at a time and given back reversed, so no frame cache is needed and memory
    holds one block, however long the footage or the dub."""
    k = 0
    while k < len(source):
        run = 1
        while k + run < len(source) and run < block and source[k + run] == source[k] - run:
            run += 1
        if run == 1:
            yield source[k], reader.read(source[k])
        else:
            frames = [reader.read(i) for i in range(source[k] - run + 1, source[k] + 1)]  # forward: no seeks
            yield from zip(source[k:k + run], reversed(frames))
        k += run


def check_output(out: Path, inputs: list[Path]) -> None:
    """MediaError naming the problem when ``out`` cannot be the dub's file (checked before any work)."""
    if out.suffix.lower() != ".mp4":
        raise MediaError(out, "is not an .mp4 name: dubs are written as H.264 + AAC MP4 files")
    if not out.parent.is_dir():
        raise MediaError(out, f"cannot be written: the folder {out.parent} does not exist")
    if out.is_dir():
        raise MediaError(out, "is a folder: name the file to write")
    for p in inputs:
        if p.exists() and out.exists() and out.resolve() == p.resolve():
            raise MediaError(out, "is one of the dub's inputs: choose another output file")


def speech_info(path: Path) -> MediaInfo:
    """What the speech file holds; MediaError unless it has audio samples (a video's audio track counts)."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError(path, "has no audio track: choose a speech file" +
                         (" (this video is silent)" if info.has_video else ""))
    if info.audio[0].duration <= 0:
        raise MediaError(path, "has no audio samples (its audio track is empty)")
    return info


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"
