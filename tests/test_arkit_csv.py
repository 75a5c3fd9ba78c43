"""Live Link Face CSV: write/read round trips, the MediaPipe <-> ARKit mapping, frame-rate inference,
resampling, and a clear error for each way a file can be malformed."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from core.errors import AvatarStudioError
from core.expression.arkit_csv import (ARKIT_NAMES, EYE_NAMES, HEAD_NAMES, HEADER, from_mediapipe, read_csv,
                                       resample, to_mediapipe, write_csv)
from core.tracking.landmarks import BLENDSHAPE_NAMES

# Live Link Face's header, as the app writes it.
LLF_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)
JAW = ARKIT_NAMES.index("JawOpen")
BLINK = ARKIT_NAMES.index("EyeBlinkLeft")


def _row(timecode: str, values: dict[str, float] | None = None) -> str:
    """One Live Link Face line: the timecode, 61, then the 61 values (named ones set, others 0)."""
    values = {k.lower(): v for k, v in (values or {}).items()}
    return ",".join([timecode, "61", *(f"{values.get(n.lower(), 0.0):.6f}" for n in HEADER[2:])])


def _llf_60fps(n: int = 10) -> str:
    """n frames of a 60 fps take from 10:20:30:55 (crossing a second), CRLF-ended: JawOpen = 0.1 * frame,
    EyeBlinkLeft alternates 0, 1."""
    lines = [LLF_HEADER]
    for i in range(n):
        sec, frame = divmod(55 + i, 60)
        lines.append(_row(f"10:20:{30 + sec:02d}:{frame:02d}.000",
                          {"JawOpen": 0.1 * i, "EyeBlinkLeft": i % 2, "HeadYaw": -0.25}))
    return "\r\n".join(lines) + "\r\n"


def test_header_lists_52_arkit_names_then_rotations():
    assert ",".join(HEADER) == LLF_HEADER
    assert len(ARKIT_NAMES) == 52 and ARKIT_NAMES[0] == "EyeBlinkLeft" and ARKIT_NAMES[-1] == "TongueOut"
    assert len(HEAD_NAMES) == 3 and len(EYE_NAMES) == 6


@pytest.mark.parametrize("fps", [60, 25, 30.0, Fraction(30000, 1001), 12])
def test_write_read_round_trip(tmp_path, fps):
    rng = np.random.default_rng(0)
    bs = rng.random((150, 52)).astype(np.float32)   # [T,52]
    head = rng.uniform(-0.5, 0.5, (150, 3))          # [T,3] radians
    path = tmp_path / "take.csv"
    write_csv(path, bs, fps, head=head)

    lines = path.read_text().splitlines()
    assert lines[0] == LLF_HEADER and len(lines) == 151
    assert all(line.split(",")[1] == "61" and len(line.split(",")) == 63 for line in lines[1:])
    assert [p.name for p in tmp_path.iterdir()] == ["take.csv"]  # the atomic write left no temporary file

    take = read_csv(path)
    assert take.blendshapes.shape == (150, 52) and take.blendshapes.dtype == np.float32
    np.testing.assert_allclose(take.blendshapes, bs, atol=1e-6)
    np.testing.assert_allclose(take.head, head, atol=1e-6)
    np.testing.assert_array_equal(take.eyes, 0.0)
    assert np.all(np.diff(take.times) > 0)
    # Sub-frames are thousandths of a timecode frame: times are exact to half of one.
    np.testing.assert_allclose(take.times, np.arange(150) / float(fps), atol=0.5 / 1000 / take.fps + 1e-12)


def test_timecodes_are_llf_format_and_strictly_increasing(tmp_path):
    path = tmp_path / "take.csv"
    write_csv(path, np.zeros((75, 52)), 60, eyes=np.full((75, 6), 0.1))
    timecodes = [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    assert timecodes[:2] == ["00:00:00:00.000", "00:00:00:01.000"]
    assert timecodes[72] == "00:00:01:12.000"
    assert timecodes == sorted(set(timecodes))
    take = read_csv(path)
    assert take.fps == 60.0
    np.testing.assert_allclose(take.eyes, 0.1, atol=1e-6)


def test_written_values_have_six_decimals(tmp_path):
    path = tmp_path / "take.csv"
    write_csv(path, np.full((1, 52), 1 / 3), 30)
    assert path.read_text().splitlines()[1].split(",")[2] == "0.333333"


def test_mediapipe_arkit_mapping_round_trip():
    rng = np.random.default_rng(1)
    mp = rng.random((7, 52)).astype(np.float32)  # [T,52] BLENDSHAPE_NAMES order
    arkit = from_mediapipe(mp)
    for j, name in enumerate(ARKIT_NAMES):
        if name == "TongueOut":
            np.testing.assert_array_equal(arkit[:, j], 0.0)
        else:
            mp_j = BLENDSHAPE_NAMES.index(name[0].lower() + name[1:])
            np.testing.assert_array_equal(arkit[:, j], mp[:, mp_j])
    back = to_mediapipe(arkit)
    np.testing.assert_array_equal(back[:, 0], 0.0)  # _neutral
    np.testing.assert_array_equal(back[:, 1:], mp[:, 1:])
    np.testing.assert_array_equal(from_mediapipe(back), arkit)


def test_mapping_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"\[T,52\]"):
        from_mediapipe(np.zeros((3, 51)))
    with pytest.raises(ValueError, match=r"\[T,52\]"):
        to_mediapipe(np.zeros(52))


def test_llf_60fps_resampled_to_25fps_is_linear_interpolation(tmp_path):
    path = tmp_path / "llf.csv"
    path.write_text(_llf_60fps(), newline="")
    take = read_csv(path)
    assert take.fps == 60.0 and len(take) == 10
    np.testing.assert_allclose(take.times, np.arange(10) / 60, atol=1e-12)
    assert take.start == pytest.approx(10 * 3600 + 20 * 60 + 30 + 55 / 60)
    np.testing.assert_allclose(take.head[:, 0], -0.25)

    out = resample(take, 25)
    assert out.shape == (4, 52)  # t = 0, 0.04, 0.08, 0.12 within the span 0..0.15 s
    # JawOpen = 0.1 * (t * 60) is linear; EyeBlinkLeft alternates 0, 1 at frames: t = 0.04 is frame 2.4
    # (between 0 and 1), 0.08 frame 4.8 (between 0 and 1), 0.12 frame 7.2 (between 1 and 0).
    np.testing.assert_allclose(out[:, JAW], [0.0, 0.24, 0.48, 0.72], atol=1e-6)
    np.testing.assert_allclose(out[:, BLINK], [0.0, 0.4, 0.8, 0.8], atol=1e-6)
    others = np.delete(out, [JAW, BLINK], axis=1)
    np.testing.assert_array_equal(others, 0.0)


def test_subframes_and_rate_inference(tmp_path):
    path = tmp_path / "llf.csv"
    # 25 fps labels: frames 23, 24, then 0, 1 of the next second, with LLF's sub-frames.
    path.write_text("\n".join([LLF_HEADER, _row("01:00:00:23.500"), _row("01:00:00:24.000"),
                               _row("01:00:01:00.250"), _row("01:00:01:01.000")]))
    take = read_csv(path)
    assert take.fps == 25.0
    np.testing.assert_allclose(take.times, np.array([0.0, 0.5, 1.75, 2.5]) / 25, atol=1e-12)
    # Given, the rate is used as it is.
    assert read_csv(path, fps=50).fps == 50.0
    with pytest.raises(AvatarStudioError, match=r"frame 24, not below the given fps 24"):
        read_csv(path, fps=24)


def test_take_within_one_second_falls_back_to_30_fps(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("\n".join([LLF_HEADER, _row("00:00:05:03.000"), _row("00:00:05:04.000")]))
    assert read_csv(path).fps == 30.0
    np.testing.assert_allclose(read_csv(path).times, [0, 1 / 30])
    path.write_text("\n".join([LLF_HEADER, _row("00:00:05:40.000"), _row("00:00:05:41.000")]))
    assert read_csv(path).fps == 50.0  # frame 41 rules 30 out


def test_columns_matched_by_name_in_any_order_case_insensitive(tmp_path):
    names = ["jawopen", "Timecode", "Extra", *reversed([n.upper() for n in ARKIT_NAMES if n != "JawOpen"])]
    values = {n: 0.01 * i for i, n in enumerate(ARKIT_NAMES)}
    rows = [",".join(names)]
    for tc in ("00:00:00:00", "00:00:00:01"):
        by_lower = {k.lower(): v for k, v in values.items()}
        rows.append(",".join(tc if n == "Timecode" else "x" if n == "Extra" else f"{by_lower[n.lower()]:.6f}"
                             for n in names))
    path = tmp_path / "reordered.csv"
    path.write_text("\n".join(rows) + "\n\n")
    take = read_csv(path)
    np.testing.assert_allclose(take.blendshapes, np.tile([values[n] for n in ARKIT_NAMES], (2, 1)), atol=1e-6)
    np.testing.assert_array_equal(take.head, 0.0)  # no head or eye columns: zeros
    np.testing.assert_array_equal(take.eyes, 0.0)


def test_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="fps must be positive"):
        write_csv(tmp_path / "a.csv", np.zeros((2, 52)), 0)
    with pytest.raises(ValueError, match="head must be"):
        write_csv(tmp_path / "a.csv", np.zeros((2, 52)), 30, head=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ARKit blendshapes"):
        write_csv(tmp_path / "a.csv", np.zeros((2, 51)), 30)
    assert not list(tmp_path.iterdir())


def _malformed(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _with(row: str, name: str, text: str) -> str:
    """``row`` with the field of column ``name`` replaced by ``text``."""
    fields = row.split(",")
    fields[HEADER.index(name)] = text
    return ",".join(fields)


GOOD = [_row("00:00:00:00.000"), _row("00:00:00:01.000")]
MALFORMED = {
    "empty": ("", "is empty"),
    "blank lines only": ("\n\n", "is empty"),
    "header only": (LLF_HEADER + "\n", "has a header but no frames"),
    "no timecode": (_malformed([LLF_HEADER.replace("Timecode", "Time"), *GOOD]), "has no Timecode column"),
    "missing blendshapes": (_malformed([LLF_HEADER.replace("JawOpen", "Jaw").replace("MouthClose", "MC"), *GOOD]),
                            "lacks 2 of the 52 ARKit blendshape columns: JawOpen, MouthClose"),
    "non-numeric": (_malformed([LLF_HEADER, GOOD[0], _with(GOOD[1], "MouthClose", "abc")]),
                    "line 3, column MouthClose: 'abc' is not a finite number"),
    "nan": (_malformed([LLF_HEADER, _with(GOOD[0], "HeadYaw", "nan"), GOOD[1]]),
            "line 2, column HeadYaw: 'nan' is not a finite number"),
    "short row": (_malformed([LLF_HEADER, GOOD[0], GOOD[1].rsplit(",", 1)[0]]),
                  "line 3 has 62 fields, the header has 63"),
    "malformed timecode": (_malformed([LLF_HEADER, GOOD[0], _row("00:00:1:12.000")]),
                           "line 3: timecode '00:00:1:12.000' is not HH:MM:SS:FF.mmm"),
    "repeated timecode": (_malformed([LLF_HEADER, GOOD[0], GOOD[0]]),
                          "line 3: timecode 00:00:00:00.000 does not come after 00:00:00:00.000"),
    "decreasing timecode": (_malformed([LLF_HEADER, GOOD[1], GOOD[0]]), "timecodes must strictly increase"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_raise_a_clear_error(tmp_path, case):
    text, problem = MALFORMED[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(AvatarStudioError) as e:
        read_csv(path)
    assert str(path) in str(e.value) and problem in str(e.value)


def test_unreadable_files_raise_a_clear_error(tmp_path):
    with pytest.raises(AvatarStudioError, match="cannot be read"):
        read_csv(tmp_path / "missing.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81Timecode")
    with pytest.raises(AvatarStudioError, match="cannot be read"):
        read_csv(tmp_path / "binary.csv")
