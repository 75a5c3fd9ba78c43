"""ARKit blendshape animation as Live Link Face CSV: the file Epic's iPhone app records and Unreal and
Audio2Face users exchange, so expression tracks can leave and enter the app.

One row per frame: ``Timecode`` (``HH:MM:SS:FF.mmm``: frame FF at the timecode's rate, then a sub-frame in
thousandths), ``BlendShapeCount`` (61), the 52 ARKit blendshapes, the head's yaw/pitch/roll and each eye's
yaw/pitch/roll (radians). The file does not state its frame rate; it is inferred from the frame numbers.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from core.errors import MediaError
from core.fsutil import atomic_path
from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.pose import euler_degrees

# The 52 ARKit blendshapes in ARKit (and Live Link Face) column order.
ARKIT_NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose",
    "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight",
    "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
HEAD_NAMES: tuple[str, ...] = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_NAMES: tuple[str, ...] = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                              "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *ARKIT_NAMES, *HEAD_NAMES, *EYE_NAMES)
BLENDSHAPE_COUNT = len(ARKIT_NAMES) + len(HEAD_NAMES) + len(EYE_NAMES)  # 61, as Live Link Face writes it

# Timecode rates a file's frame numbers are rounded up to when its rate is inferred.
STANDARD_RATES: tuple[int, ...] = (24, 25, 30, 50, 60)
_FALLBACK_RATE = 30  # a take within one second shows no rollover: its rate cannot be told

# ARKIT_NAMES[i] is BLENDSHAPE_NAMES[_MP_OF_ARKIT[i]]; -1 for TongueOut, which MediaPipe lacks.
_MP_LOWER = [n.lower() for n in BLENDSHAPE_NAMES]
_MP_OF_ARKIT = np.array([_MP_LOWER.index(n.lower()) if n.lower() in _MP_LOWER else -1 for n in ARKIT_NAMES])
_TIMECODE = re.compile(r"(\d+):([0-5]\d):([0-5]\d)[:;](\d+)(?:\.(\d+))?")


@dataclass
class ArkitTake:
    """A Live Link Face take of T frames, times relative to its first frame."""

    blendshapes: np.ndarray  # float32 [T,52] as the file holds them (ARKit: [0,1]), order = ARKIT_NAMES
    head: np.ndarray         # float32 [T,3] yaw, pitch, roll (radians); zeros when the file has no head columns
    eyes: np.ndarray         # float32 [T,6] left yaw/pitch/roll, right yaw/pitch/roll (radians); zeros when absent
    times: np.ndarray        # float64 [T] seconds since the first frame, strictly increasing
    fps: float               # the timecode's frame rate (given, or inferred from its frame numbers)
    start: float = 0.0       # the first timecode, in seconds (time of day in Live Link Face takes)

    def __len__(self) -> int:
        return len(self.times)


def from_mediapipe(bs: np.ndarray) -> np.ndarray:
    """Tracking blendshapes float [T,52] (BLENDSHAPE_NAMES order) -> float32 [T,52] in ARKit order.

    MediaPipe's ``_neutral`` is dropped and ``TongueOut``, which it does not track, is 0.
    """
    bs = np.asarray(bs, np.float32)
    if bs.ndim != 2 or bs.shape[1] != len(BLENDSHAPE_NAMES):
        raise ValueError(f"MediaPipe blendshapes are [T,{len(BLENDSHAPE_NAMES)}], got {bs.shape}")
    out = bs[:, _MP_OF_ARKIT]  # [T,52]; the TongueOut column took index -1 and is zeroed next
    out[:, _MP_OF_ARKIT < 0] = 0.0
    return out


def to_mediapipe(arkit: np.ndarray) -> np.ndarray:
    """ARKit-order blendshapes float [T,52] -> float32 [T,52] in BLENDSHAPE_NAMES order (``_neutral`` = 0,
    ``TongueOut`` dropped)."""
    arkit = np.asarray(arkit, np.float32)
    if arkit.ndim != 2 or arkit.shape[1] != len(ARKIT_NAMES):
        raise ValueError(f"ARKit blendshapes are [T,{len(ARKIT_NAMES)}], got {arkit.shape}")
    out = np.zeros((len(arkit), len(BLENDSHAPE_NAMES)), np.float32)  # [T,52]
    mapped = _MP_OF_ARKIT >= 0
    out[:, _MP_OF_ARKIT[mapped]] = arkit[:, mapped]
    return out


def head_angles(rot: np.ndarray) -> np.ndarray:
    """float32 [T,3]: head rotations [T,3,3] as the yaw, pitch and roll (radians) a Live Link Face take holds."""
    return np.radians(euler_degrees(rot)).astype(np.float32)


def _timecode_rate(fps: float | Fraction) -> int:
    """The frame rate a timecode for ``fps`` frames a second counts in: the smallest standard rate that is
    at least ``fps``, else ``fps`` rounded up (so every frame number stays below it)."""
    return next((r for r in STANDARD_RATES if r >= fps), math.ceil(fps))


def write_csv(path: str | Path, blendshapes_arkit: np.ndarray, fps: float | Fraction,
              head: np.ndarray | None = None, eyes: np.ndarray | None = None) -> None:
    """Write T frames sampled at ``fps`` as a Live Link Face CSV, atomically.

    ``blendshapes_arkit`` float [T,52] in ARKIT_NAMES order; ``head`` [T,3] yaw/pitch/roll and ``eyes`` [T,6]
    in radians, zeros when None. Frame i is at i/fps; its timecode counts frames at the smallest standard
    rate at least ``fps``, with the sub-frame in thousandths, so any rate reads back at the right times.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    bs = np.asarray(blendshapes_arkit, np.float64)
    if bs.ndim != 2 or bs.shape[1] != len(ARKIT_NAMES) or len(bs) == 0:
        raise ValueError(f"ARKit blendshapes are [T,{len(ARKIT_NAMES)}] with T >= 1, got {bs.shape}")
    columns = [bs]
    for name, arr, width in (("head", head, len(HEAD_NAMES)), ("eyes", eyes, len(EYE_NAMES))):
        arr = np.zeros((len(bs), width)) if arr is None else np.asarray(arr, np.float64)
        if arr.shape != (len(bs), width):
            raise ValueError(f"{name} must be [{len(bs)},{width}], got {arr.shape}")
        columns.append(arr)
    values = np.concatenate(columns, axis=1)  # [T,61]
    if not np.isfinite(values).all():
        raise ValueError("blendshapes, head and eyes must be finite")

    fps = Fraction(fps)
    rate = _timecode_rate(fps)
    lines = [",".join(HEADER)]
    for i, row in enumerate(values):
        # Frame i's time in thousandths of a timecode frame, split into seconds, frame and sub-frame.
        frame_ms, sub = divmod(round(Fraction(i) / fps * rate * 1000), 1000)
        seconds, frame = divmod(frame_ms, rate)
        minutes, sec = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        timecode = f"{hours:02d}:{minute:02d}:{sec:02d}:{frame:02d}.{sub:03d}"
        lines.append(",".join([timecode, str(BLENDSHAPE_COUNT), *(f"{v:.6f}" for v in row)]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_csv(path: str | Path, fps: float | Fraction | None = None) -> ArkitTake:
    """Read a Live Link Face CSV; MediaError (an AvatarStudioError) naming the file and the problem.

    Columns are matched by name, case-insensitively, in any order; others are ignored; missing head or eye
    columns read as zeros. ``fps`` is the rate the timecodes' frame numbers count in; None infers it: the
    largest frame number + 1 rounded up to a standard rate when the take crosses a second, else 30 (or the
    smallest standard rate the frame numbers allow).
    """
    path = Path(path)
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next((row for row in reader if row), None)  # the first non-blank line
            cells: list[list[str]] = []   # [T][len(header)]
            line_numbers: list[int] = []  # [T] each row's line in the file, for messages
            for row in reader:
                if not row:  # a blank line
                    continue
                if len(row) != len(header):
                    raise MediaError(path, f"line {reader.line_num} has {len(row)} fields, the header has "
                                           f"{len(header)}")
                cells.append(row)
                line_numbers.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MediaError(path, f"cannot be read as a CSV file ({e})") from e
    if header is None:
        raise MediaError(path, "is empty: a Live Link Face CSV starts with a header row (Timecode,BlendShapeCount,"
                               "EyeBlinkLeft,...)")

    column: dict[str, int] = {}
    for i, name in enumerate(header):
        column.setdefault(name.strip().lower(), i)
    if "timecode" not in column:
        raise MediaError(path, "has no Timecode column: not a Live Link Face CSV")
    missing = [n for n in ARKIT_NAMES if n.lower() not in column]
    if missing:
        raise MediaError(path, f"lacks {len(missing)} of the {len(ARKIT_NAMES)} ARKit blendshape columns: "
                               f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
    if not cells:
        raise MediaError(path, "has a header but no frames")

    def numbers(names: tuple[str, ...]) -> np.ndarray:
        """float32 [T,len(names)] of the named columns; a column the file lacks reads as zeros."""
        out = np.zeros((len(cells), len(names)), np.float32)
        for j, name in enumerate(names):
            c = column.get(name.lower())
            for t, row in enumerate(cells if c is not None else ()):
                try:
                    v = float(row[c])
                except ValueError:
                    v = math.nan
                if not math.isfinite(v) or abs(v) > np.finfo(np.float32).max:
                    raise MediaError(path, f"line {line_numbers[t]}, column {name}: {row[c].strip()!r} is not "
                                           f"a finite number")
                out[t, j] = v
        return out

    blendshapes, head, eyes = numbers(ARKIT_NAMES), numbers(HEAD_NAMES), numbers(EYE_NAMES)
    times, rate, start = _parse_timecodes(path, [row[column["timecode"]] for row in cells], line_numbers, fps)
    return ArkitTake(blendshapes, head, eyes, times, rate, start)


def _parse_timecodes(path: Path, timecodes: list[str], line_numbers: list[int],
                     fps: float | Fraction | None) -> tuple[np.ndarray, float, float]:
    """(times float64 [T] seconds since the first, the timecode rate, the first timecode in seconds)."""
    seconds = np.empty(len(timecodes), np.int64)  # [T] whole seconds of each timecode
    frames = np.empty(len(timecodes), np.float64)  # [T] frame number + sub-frame
    previous: tuple[int, float] | None = None
    for t, text in enumerate(timecodes):
        m = _TIMECODE.fullmatch(text.strip())
        if m is None:
            raise MediaError(path, f"line {line_numbers[t]}: timecode {text.strip()!r} is not HH:MM:SS:FF.mmm")
        h, mi, s, ff, sub = m.groups()
        key = (int(h) * 3600 + int(mi) * 60 + int(s), int(ff) + float(f"0.{sub or 0}"))
        if previous is not None and key <= previous:
            raise MediaError(path, f"line {line_numbers[t]}: timecode {text.strip()} does not come after "
                                   f"{timecodes[t - 1].strip()}: timecodes must strictly increase")
        if fps is not None and int(ff) >= fps:
            raise MediaError(path, f"line {line_numbers[t]}: timecode {text.strip()} has frame {int(ff)}, "
                                   f"not below the given fps {float(fps):g}")
        seconds[t], frames[t] = key
        previous = key

    if fps is None:
        frame_count = int(frames.max()) + 1  # frame numbers seen: 0 .. frame_count - 1
        crosses_second = seconds[-1] > seconds[0]
        fps = _timecode_rate(frame_count if crosses_second else max(frame_count, _FALLBACK_RATE))
    rate = float(fps)
    times = (seconds - seconds[0]) + (frames - frames[0]) / rate  # [T]
    return times, rate, float(seconds[0] + frames[0] / rate)


def resample(take: ArkitTake, fps: float | Fraction) -> np.ndarray:
    """The take's blendshapes float32 [N,52] at t = i/fps over its span, linearly interpolated (N =
    floor(span * fps) + 1), so a take can drive footage at another frame rate."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = math.floor(float(take.times[-1] - take.times[0]) * float(fps) + 1e-9) + 1
    grid = take.times[0] + np.arange(n) / float(fps)  # [N] seconds
    return np.stack([np.interp(grid, take.times, take.blendshapes[:, j])
                     for j in range(take.blendshapes.shape[1])], axis=1).astype(np.float32)
