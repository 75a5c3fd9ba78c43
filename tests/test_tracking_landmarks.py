"""Face landmarks, blendshapes and regions on real footage, and on clips made to break them."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from scipy.signal import find_peaks

from core.errors import MediaError
from core.media import FrameReader, VideoWriter
from core.tracking.landmarks import BLENDSHAPE_NAMES, LandmarkConfig, detect_landmarks
from core.tracking.regions import face_oval_mask, mouth_box, regions, upper_lower_split_y
from core.tracking.template import FACE_OVAL, LEFT_EYE, LIPS, RIGHT_EYE

# The clip's blinks, checked by eye on its frames (both eyes shut): see test-artifacts/may_blinks.png.
MAY_BLINKS = [7, 101, 172, 252, 312]


@pytest.fixture(scope="module")
def may(media_dir):
    with FrameReader(media_dir / "may_13s.mp4") as reader:
        return detect_landmarks(reader)


def _write(path, frames, fps=25):
    with VideoWriter(path, Fraction(fps), (frames[0].shape[1], frames[0].shape[0])) as w:
        for f in frames:
            w.write(f)
    return path


def _track(path, **kw):
    with FrameReader(path) as reader:
        return detect_landmarks(reader, LandmarkConfig(), **kw)


@pytest.mark.slow
def test_may_face_on_every_frame(may):
    n = 331
    assert may.landmarks.shape == (n, 478, 2) and may.landmarks.dtype == np.float32
    assert may.depth.shape == (n, 478) and may.head_transform.shape == (n, 4, 4)
    assert may.detected.mean() >= 0.99 and may.valid.all()
    assert (may.landmarks >= 0).all() and (may.landmarks[..., 0] < 512).all() and (may.landmarks[..., 1] < 512).all()
    assert may.boxes.shape == (n, 4) and (may.boxes[:, 2:] > may.boxes[:, :2] + 100).all()
    # MediaPipe's transform is a rigid head pose in cm, the head some tens of cm in front of the camera.
    rot = may.head_transform[:, :3, :3]
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-2)
    assert (may.head_transform[:, 2, 3] < -10).all()


@pytest.mark.slow
def test_may_blendshapes_show_the_blinks(may, artifacts_dir):
    assert len(BLENDSHAPE_NAMES) == 52 and may.blendshapes.shape == (331, 52)
    assert BLENDSHAPE_NAMES[0] == "_neutral" and BLENDSHAPE_NAMES[9] == "eyeBlinkLeft"
    assert (may.blendshapes >= 0).all() and (may.blendshapes <= 1).all()
    left = may.blendshapes[:, BLENDSHAPE_NAMES.index("eyeBlinkLeft")]
    right = may.blendshapes[:, BLENDSHAPE_NAMES.index("eyeBlinkRight")]
    _plot_blinks(left, right, artifacts_dir / "may_blinks.png")
    peaks = {}
    for name, curve in (("left", left), ("right", right)):
        found, _ = find_peaks(curve, prominence=0.2)
        assert len(found) == len(MAY_BLINKS), f"{name} eye: peaks at {found.tolist()}"
        assert np.abs(found - MAY_BLINKS).max() <= 2, f"{name} eye: peaks at {found.tolist()}"
        assert (curve[found] > np.median(curve) + 0.25).all(), f"{name} eye: peak values {curve[found]}"
        peaks[name] = found
    assert np.abs(peaks["left"] - peaks["right"]).max() <= 2


def _plot_blinks(left, right, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(left, label="eyeBlinkLeft")
    ax.plot(right, label="eyeBlinkRight")
    ax.vlines(MAY_BLINKS, 0, 1, colors="grey", linestyles="dotted", label="blinks (by eye)")
    ax.set_xlabel("frame")
    ax.legend()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


@pytest.mark.slow
def test_may_regions(may):
    size = (512, 512)
    reg = regions(may.landmarks, size)
    assert reg["mouth_box"].shape == (331, 4) and reg["mouth_box"].dtype == np.int32
    assert reg["split_y"].shape == (331,) and reg["split_y"].dtype == np.float32
    assert reg["face_box"].shape == (331, 4) and reg["face_box"].dtype == np.int32
    lips = may.landmarks[:, LIPS]  # [T,40,2]
    box = reg["mouth_box"][:, None]
    assert ((lips >= box[..., :2]) & (lips < box[..., 2:])).all()
    eyes_y = may.landmarks[:, np.r_[LEFT_EYE, RIGHT_EYE], 1].max(axis=1)
    chin_y = may.landmarks[:, 152, 1]
    assert ((eyes_y < reg["split_y"]) & (reg["split_y"] < chin_y)).all()
    assert ((reg["face_box"] >= 0) & (reg["face_box"] <= 512)).all()

    t = 100
    assert mouth_box(may.landmarks[t], size=size) == tuple(reg["mouth_box"][t])
    assert upper_lower_split_y(may.landmarks[t]) == pytest.approx(float(reg["split_y"][t]))
    mask = face_oval_mask(may.landmarks[t], size)
    assert mask.shape == (512, 512) and mask.dtype == bool
    x0, y0, x1, y1 = reg["mouth_box"][t]
    assert mask[(y0 + y1) // 2, (x0 + x1) // 2]  # the mouth is inside the face
    assert not mask[:10].any() and not mask[:, :10].any()  # the corners are not
    # The mask fills the oval polygon: its area matches the shoelace area of the landmarks.
    x, y = may.landmarks[t, FACE_OVAL].T
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert mask.sum() == pytest.approx(area, rel=0.02)


@pytest.mark.slow
def test_covered_face_is_flagged_and_interpolated(may, media_dir, tmp_path):
    covered = range(20, 25)
    frames = []
    with FrameReader(media_dir / "may_13s.mp4") as reader:
        for i in range(61):
            f = reader.read(i).copy()
            if i in covered:
                x0, y0, x1, y1 = may.boxes[i].astype(int)
                f[max(y0 - 40, 0):y1 + 40, max(x0 - 40, 0):x1 + 40] = 0
            frames.append(f)
    out = _track(_write(tmp_path / "covered.mp4", frames))
    assert not out.detected[list(covered)].any()
    assert out.valid.all()
    assert out.detected.sum() == 61 - len(covered)
    # Interpolated frames lie on the line between the frames either side of the gap.
    a, b = out.landmarks[19], out.landmarks[25]
    assert np.allclose(out.landmarks[22], a + (b - a) * 3 / 6, atol=1e-3)
    assert np.abs(out.landmarks[22] - may.landmarks[22]).mean() < 5  # and near where the face was


@pytest.mark.slow
def test_long_gap_stays_invalid(media_dir, tmp_path):
    with FrameReader(media_dir / "may_13s.mp4") as reader:
        frames = [reader.read(i) for i in range(10)]
    blank = np.full_like(frames[0], 128)
    out = _track(_write(tmp_path / "gap.mp4", frames[:5] + [blank] * 8 + frames[5:]))
    assert out.detected.tolist() == [True] * 5 + [False] * 8 + [True] * 5
    with FrameReader(tmp_path / "gap.mp4") as reader:
        short = detect_landmarks(reader, LandmarkConfig(max_gap_frames=4))
    assert short.valid.tolist() == [True] * 5 + [False] * 8 + [True] * 5
    assert np.isfinite(short.landmarks).all()
    assert out.valid.all()  # the default bridges 8 frames


def test_no_face_names_the_file_and_frame_count(tmp_path):
    rng = np.random.default_rng(0)
    y = np.linspace(0, 255, 128, dtype=np.float32)[:, None, None]
    frames = [np.clip(y + rng.normal(0, 30, (128, 128, 3)), 0, 255).astype(np.uint8) for _ in range(30)]
    path = _write(tmp_path / "noise.mp4", frames)
    with pytest.raises(MediaError, match="no face found") as e:
        _track(path)
    assert "30 frames" in str(e.value) and "noise.mp4" in str(e.value)


@pytest.fixture(scope="module")
def two_faces(media_dir, tmp_path_factory):
    """may (left) and katie (right) side by side, each at half size: 512x256."""
    frames = []
    with FrameReader(media_dir / "may_13s.mp4") as a, FrameReader(media_dir / "katie_8s.mp4") as b:
        for i in range(40):
            left = cv2.resize(a.read(i), (256, 256), interpolation=cv2.INTER_AREA)
            right = cv2.resize(b.read(i), (256, 256), interpolation=cv2.INTER_AREA)
            frames.append(np.hstack([left, right]))
    return _write(tmp_path_factory.mktemp("two") / "two_faces.mp4", frames)


@pytest.mark.slow
def test_two_faces_follows_one_and_can_pick_the_other(two_faces):
    default = _track(two_faces)
    left = _track(two_faces, face=0)
    right = _track(two_faces, face=1)
    for out in (default, left, right):
        assert out.detected.all()
    centre_x = lambda out: (out.boxes[:, 0] + out.boxes[:, 2]) / 2  # noqa: E731
    assert (centre_x(left) < 256).all() and (centre_x(right) > 256).all()
    # The default follows one of them all through, never jumping to the other.
    side = centre_x(default) < 256
    assert side.all() or not side.any()
    with pytest.raises(MediaError, match="face 2 was asked for"):
        _track(two_faces, face=2)
