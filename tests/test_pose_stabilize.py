"""Head pose fit (Eq. 7-8) and Head-Sync Stabilizer (Eq. 9-12): synthetic clips with known truth, and may_13s."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from core.jobs import CancelToken, Cancelled
from core.media import FrameReader
from core.tracking.landmarks import detect_landmarks
from core.tracking.pose import PoseConfig, PoseFit, euler_degrees, fit_pose, head_vertices, project
from core.tracking.stabilize import (StabilizeConfig, Tracks, _lift, bundle_adjust, semantic_weights, stabilize,
                                     track_keypoints)
from core.tracking.template import (LEFT_BROW, LEFT_EYE, LEFT_IRIS, RIGHT_BROW, RIGHT_EYE, RIGHT_IRIS,
                                    RIGID_LANDMARKS, canonical_mesh)

SIZE = 512
FOCAL = 1.2 * SIZE
T = 150


def _truth() -> tuple[np.ndarray, np.ndarray]:
    """Known smooth head motion: rot [T,3,3], trans [T,3] cm (yaw ±20°, pitch ±10°, roll ±5°)."""
    t = np.arange(T)
    yaw = 20 * np.sin(2 * np.pi * t / T)
    pitch = 10 * np.sin(2 * np.pi * t / 100 + 0.5)
    roll = 5 * np.sin(2 * np.pi * t / 75 + 1.0)
    rot = Rotation.from_euler("YXZ", np.stack([yaw, pitch, roll], -1), degrees=True).as_matrix()
    trans = np.stack([2 * np.sin(2 * np.pi * t / T + 0.3), 1.5 * np.cos(2 * np.pi * t / T),
                      45 + 4 * np.sin(2 * np.pi * t / T + 1.0)], -1)
    return rot, trans


def _landmarks(rot, trans, vertices=None, seed=0) -> np.ndarray:
    """Template projected [T,468,2] with 1.5 px noise, 3.5 px more on the eyes and brows."""
    rng = np.random.default_rng(seed)
    vertices = head_vertices() if vertices is None else vertices
    uv = project(vertices, rot, trans, FOCAL, SIZE / 2, SIZE / 2).astype(np.float64)
    uv += rng.normal(0, 1.5, uv.shape)
    jittery = np.concatenate([LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW])
    uv[:, jittery] += rng.normal(0, 3.5, uv[:, jittery].shape)
    return uv.astype(np.float32)


def _render(rot, trans, seed=1) -> list[np.ndarray]:
    """uint8 [H,W,3] frames of the template covered with a smooth random texture through its uv map, over a
    textured background (a stand-in for skin: continuous texture, so optical flow sees the true motion).

    Per frame: the nearest front-facing triangle of every pixel (painted far to near), its barycentric
    coordinates there, and one remap of the texture.
    """
    rng = np.random.default_rng(seed)
    mesh = canonical_mesh()
    triangles = mesh.triangles                                                   # [F,3]
    texture = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3)).astype(np.uint8), (0, 0), 1.5)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    tex_uv = mesh.uv.astype(np.float64) * 255                                    # [V,2] texture px
    background = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8), (0, 0), 2)
    vertices = head_vertices().astype(np.float64)
    grid = np.mgrid[0:SIZE, 0:SIZE][::-1].transpose(1, 2, 0).astype(np.float64)   # [H,W,2] x, y
    frames = []
    for i in range(len(rot)):
        cam = vertices @ rot[i].T + trans[i]                                     # [V,3]
        corner = (FOCAL * cam[:, :2] / cam[:, 2:] + SIZE / 2 - 0.5)[triangles]   # [F,3,2] OpenCV pixels
        e1, e2 = corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]                          # < 0: facing the camera
        owner = np.full((SIZE, SIZE), -1, np.int32)
        for k in np.argsort(-cam[triangles, 2].mean(1)):
            if det[k] < 0:
                cv2.fillConvexPoly(owner, np.round(corner[k] * 16).astype(np.int32), int(k), cv2.LINE_8, 4)
        face = owner >= 0
        k = owner[face]
        rel = grid[face] - corner[k, 0]
        b1 = (rel[:, 0] * e2[k, 1] - rel[:, 1] * e2[k, 0]) / det[k]
        b2 = (e1[k, 0] * rel[:, 1] - e1[k, 1] * rel[:, 0]) / det[k]
        src = tex_uv[triangles[k]]                                               # [n,3,2]
        maps = np.full((SIZE, SIZE, 2), -1, np.float32)
        maps[face] = src[:, 0] + b1[:, None] * (src[:, 1] - src[:, 0]) + b2[:, None] * (src[:, 2] - src[:, 0])
        skin = cv2.remap(texture, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames.append(np.where(face[..., None], skin, background))
    return frames


def _rot_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle [T] between rotations a, b [T,3,3]."""
    cos = (np.trace(np.einsum("tji,tjk->tik", a, b), axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _jitter(rot: np.ndarray, trans: np.ndarray) -> tuple[float, float]:
    """Mean absolute second difference of Euler angles (deg) and of translation."""
    return (float(np.abs(np.diff(euler_degrees(rot), 2, axis=0)).mean()),
            float(np.abs(np.diff(trans, 2, axis=0)).mean()))


@pytest.fixture(scope="module")
def synthetic():
    rot, trans = _truth()
    landmarks = _landmarks(rot, trans)
    valid = np.ones(T, bool)
    return rot, trans, landmarks, valid, fit_pose(landmarks, valid, (SIZE, SIZE))


@pytest.fixture(scope="module")
def frames(synthetic):
    rot, trans = synthetic[:2]
    return _render(rot, trans).__getitem__


def _trans_error(trans: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame translation error [T] once the clip's mean offset is taken out: an error in the focal
    length shifts every frame's depth alike (a few percent of 45 cm), which no stabilizer can undo and
    which would swamp the per-frame errors the comparison is about."""
    return np.linalg.norm((trans - trans.mean(0)) - (truth - truth.mean(0)), axis=1)


def _rms_error(trans: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((trans - truth) ** 2, axis=1))))


def _check_stable(rot, trans, fit: PoseFit, stable_rot, stable_trans) -> None:
    """Stabilized: at most half the raw fit's jitter, and no farther from the truth."""
    raw_jitter, stable_jitter = _jitter(fit.rot, fit.trans), _jitter(stable_rot, stable_trans)
    assert stable_jitter[0] <= 0.5 * raw_jitter[0], (stable_jitter, raw_jitter)
    assert stable_jitter[1] <= 0.5 * raw_jitter[1], (stable_jitter, raw_jitter)
    assert np.median(_rot_error_deg(stable_rot, rot)) <= np.median(_rot_error_deg(fit.rot, rot))
    assert np.median(_trans_error(stable_trans, trans)) <= np.median(_trans_error(fit.trans, trans))
    # Uncorrected too: the root-mean-square distance to the true translation over the clip. (Its median is
    # not a fair judge: both are ~1.2 cm of shared focal-length depth bias, whose spread decides the median.)
    assert _rms_error(stable_trans, trans) <= _rms_error(fit.trans, trans)
    assert abs(stable_trans[:, 2].mean() / trans[:, 2].mean() - 1) < 0.05


def test_fit_recovers_focal_and_rotation(synthetic):
    rot, trans, _, _, fit = synthetic
    assert abs(fit.focal / FOCAL - 1) < 0.05
    assert (fit.cx, fit.cy) == (SIZE / 2, SIZE / 2) and fit.scale == 1.0   # no iris landmarks: template size
    assert np.median(_rot_error_deg(fit.rot, rot)) < 1.0
    assert fit.rot.shape == (T, 3, 3) and fit.rot.dtype == np.float32
    assert fit.trans.shape == (T, 3) and fit.template.shape == (468, 3) and fit.reproj_px.shape == (T,)
    assert np.isfinite(fit.reproj_px).all() and np.median(fit.reproj_px) < 4


def test_stabilize_rendered_clip(synthetic, frames):
    """The whole stabilizer, flow keypoints included, on a rendered textured head with known motion."""
    rot, trans, landmarks, valid, fit = synthetic
    seen = []
    stable = stabilize(frames, landmarks, valid, fit, progress=seen.append)
    assert stable.rot.shape == (T, 3, 3) and stable.trans.shape == (T, 3) and stable.rot.dtype == np.float32
    assert stable.keypoints >= 50
    _check_stable(rot, trans, fit, stable.rot, stable.trans)
    assert np.median(_rot_error_deg(stable.rot, rot)) < 0.5
    assert seen[-1].fraction == 1.0 and all(0 <= p.fraction <= 1 for p in seen)


def test_keypoints_follow_the_surface(synthetic, frames):
    """Tracked keypoints move as the template points under them do, and are weighted by region.

    Lucas-Kanade follows a patch by translation only, so as the head turns the patch foreshortens and the
    track slides by up to a few pixels, view-dependently (it returns when the head does); the bundle
    adjustment absorbs it in each keypoint's 3D position and the Huber loss.
    """
    rot, trans, landmarks, valid, _ = synthetic
    tracks = track_keypoints(frames, landmarks, valid)
    assert len(tracks) >= 50 and tracks.uv.shape == (len(tracks.frame), 2)
    assert np.isin(tracks.weights, np.float32([StabilizeConfig().semantic_weight, 1.0])).all()
    assert (tracks.weights == 1).sum() >= 20
    # Lift every keypoint onto the true surface where it was picked, carry it with the true motion.
    first = np.unique(tracks.point, return_index=True)[1]
    truth = PoseFit(focal=FOCAL, cx=SIZE / 2, cy=SIZE / 2, scale=1.0, template=head_vertices(),
                    rot=rot.astype(np.float32), trans=trans.astype(np.float32), reproj_px=np.zeros(T, np.float32))
    points = _lift(tracks.uv[first], tracks.frame[first], truth, head_vertices().astype(np.float64))
    cam = np.einsum("mij,mj->mi", rot[tracks.frame], points[tracks.point]) + trans[tracks.frame]
    expected = FOCAL * cam[:, :2] / cam[:, 2:] + SIZE / 2
    error = np.linalg.norm(expected - tracks.uv, axis=1)
    assert np.median(error) < 1.0 and np.percentile(error, 90) < 3.0


def test_bundle_adjust_synthetic_tracks(synthetic):
    """Stage (b) alone: tracks of template points with 0.3 px noise, visible in stretches of the clip."""
    rot, trans, landmarks, valid, fit = synthetic
    rng = np.random.default_rng(2)
    k = 120
    surface = head_vertices()[rng.choice(468, k, replace=False)] + rng.normal(0, 0.2, (k, 3)).astype(np.float32)
    uv = project(surface, rot, trans, FOCAL, SIZE / 2, SIZE / 2) + rng.normal(0, 0.3, (T, k, 2))   # [T,K,2]
    start = rng.integers(0, T - 20, k)
    stop = np.minimum(start + rng.integers(20, T, k), T)
    seen = (np.arange(T)[:, None] >= start) & (np.arange(T)[:, None] < stop)                       # [T,K]
    frame, point = np.nonzero(seen)
    tracks = Tracks(frame=frame.astype(np.int32), point=point.astype(np.int32),
                    uv=uv[frame, point].astype(np.float32), weights=np.ones(k, np.float32))
    stable = bundle_adjust(tracks, landmarks, valid, fit)
    assert stable.keypoints >= 0.9 * k   # points at the silhouette start on the wrong surface and are dropped
    _check_stable(rot, trans, fit, stable.rot, stable.trans)


def test_fit_adapts_shape_and_scale_to_the_subject():
    """A face wider, shorter and smaller than the template, with irises 11.7 mm across: the fit's
    template matches it, `scale` comes from the irises, and translation is in the subject's centimetres."""
    rot, trans = _truth()
    subject = head_vertices() * np.array([1.08, 0.94, 1.0], np.float32) * 0.9      # [468,3] cm
    marks = _landmarks(rot, trans, subject)
    angle = np.linspace(0, 2 * np.pi, 4, endpoint=False)                         # right, top, left, bottom
    iris = []
    for eye in (LEFT_EYE, RIGHT_EYE):
        ring = subject[eye].mean(0) + 0.585 * np.stack([np.cos(angle), -np.sin(angle), 0 * angle], -1)
        iris.append(project(ring, rot, trans, FOCAL, SIZE / 2, SIZE / 2))
    full = np.zeros((T, 478, 2), np.float32)
    full[:, :468] = marks
    full[:, LEFT_IRIS], full[:, RIGHT_IRIS] = iris
    fit = fit_pose(full, np.ones(T, bool), (SIZE, SIZE))
    assert abs(fit.scale / 0.9 - 1) < 0.05
    assert np.median(np.abs(fit.trans[:, 2] - trans[:, 2])) < 0.05 * 45
    uv = project(fit.template, fit.rot, fit.trans, fit.focal, fit.cx, fit.cy)
    assert np.linalg.norm(uv[:, RIGID_LANDMARKS] - marks[:, RIGID_LANDMARKS], axis=-1).mean() < 2.5
    canonical = fit_pose(full, np.ones(T, bool), (SIZE, SIZE), PoseConfig(shape_iterations=0))
    assert np.nanmean(fit.reproj_px) < np.nanmean(canonical.reproj_px)


def test_fit_without_valid_frames_raises():
    landmarks = np.zeros((10, 478, 2), np.float32)
    with pytest.raises(ValueError, match="no valid frames"):
        fit_pose(landmarks, np.zeros(10, bool), (SIZE, SIZE))
    with pytest.raises(ValueError, match=r"\[T,468\+,2\]"):
        fit_pose(np.zeros((10, 100, 2), np.float32), np.ones(10, bool), (SIZE, SIZE))


def test_invalid_frames_are_bridged(synthetic):
    rot, trans, landmarks, valid, _ = synthetic
    valid = valid.copy()
    valid[40:50] = False
    valid[:3] = False
    fit = fit_pose(landmarks, valid, (SIZE, SIZE))
    assert np.isnan(fit.reproj_px[~valid]).all() and np.isfinite(fit.reproj_px[valid]).all()
    assert np.isfinite(fit.rot).all() and np.isfinite(fit.trans).all()
    assert np.median(_rot_error_deg(fit.rot[40:50], rot[40:50])) < 3.0       # interpolated across the gap
    assert np.allclose(fit.rot[0], fit.rot[3]) and np.allclose(fit.trans[0], fit.trans[3])


def test_euler_degrees_of_known_rotations():
    cases = [(0, 0, 0), (30, 0, 0), (0, -15, 0), (0, 0, 10), (20, 10, 5), (-35, 25, -12)]
    rot = Rotation.from_euler("YXZ", cases, degrees=True).as_matrix()          # Ry(yaw) Rx(pitch) Rz(roll)
    assert np.allclose(euler_degrees(rot), cases, atol=1e-4)
    # The documented meaning: yaw > 0 turns the face toward the image's left, pitch > 0 tilts it down,
    # roll > 0 turns it clockwise (the forehead moves right).
    nose, forehead = head_vertices()[[1, 10]]
    frontal = project(head_vertices(), np.eye(3), [0, 0, 50], FOCAL, 256, 256)
    for angles, landmark, axis, sign in [((20, 0, 0), 1, 0, -1), ((0, 20, 0), 1, 1, 1), ((0, 0, 20), 10, 0, 1)]:
        turned = project(head_vertices(), Rotation.from_euler("YXZ", angles, degrees=True).as_matrix(),
                         [0, 0, 50], FOCAL, 256, 256)
        assert np.sign(turned[landmark, axis] - frontal[landmark, axis]) == sign, angles
    assert nose[2] < forehead[2]  # head space: z away from the camera, the nose nearest


def test_project_round_trip():
    rng = np.random.default_rng(0)
    points = head_vertices()                                                     # [468,3]
    rot = Rotation.from_euler("YXZ", rng.uniform(-30, 30, (5, 3)), degrees=True).as_matrix()
    trans = np.array([[1, -2, 50]] * 5) + rng.normal(0, 1, (5, 3))
    uv = project(points, rot, trans, 600.0, 256, 240)                            # [5,468,2]
    assert uv.shape == (5, 468, 2)
    depth = np.einsum("tj,nj->tn", rot[:, 2], points) + trans[:, None, 2]        # [5,468]
    cam = np.concatenate([(uv - [256, 240]) / 600.0, np.ones((5, 468, 1))], -1) * depth[..., None]
    back = np.einsum("tji,tnj->tni", rot, cam - trans[:, None])                  # R^T (X - t)
    assert np.allclose(back, points, atol=1e-3)
    # Agrees with OpenCV's pinhole, batched points and a single pose alike.
    cv, _ = cv2.projectPoints(points.astype(np.float64), cv2.Rodrigues(rot[0])[0], trans[0],
                              np.array([[600.0, 0, 256], [0, 600.0, 240], [0, 0, 1]]), None)
    assert np.allclose(project(points, rot[0], trans[0], 600.0, 256, 240), cv.reshape(-1, 2), atol=1e-3)
    assert np.allclose(project(np.broadcast_to(points, (5, 468, 3)), rot, trans, 600.0, 256, 240), uv)


def test_semantic_weights_lower_eyes_brows_and_mouth():
    marks = project(head_vertices(), np.eye(3), [0, 0, 45], FOCAL, SIZE / 2, SIZE / 2)
    points = marks[[LEFT_EYE[0], RIGHT_BROW[3], 13, 152, 6, 10, 234]]   # eye, brow, lip, chin | bridge, forehead, cheek
    assert semantic_weights(points, marks, 0.2, 5.0).tolist() == pytest.approx([0.2] * 4 + [1.0] * 3)


def test_stabilize_cancels(synthetic, frames):
    _, _, landmarks, valid, fit = synthetic
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        stabilize(frames, landmarks, valid, fit, cancel=token)
    with pytest.raises(Cancelled):
        fit_pose(landmarks, valid, (SIZE, SIZE), cancel=token)


# --- real footage -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def may(media_dir):
    """may_13s: landmarks (MediaPipe, run once for the module), raw fit, stabilized pose, a few frames."""
    with FrameReader(media_dir / "may_13s.mp4") as reader:
        marks = detect_landmarks(reader)
        fit = fit_pose(marks.landmarks, marks.valid, reader.size)
        stable = stabilize(reader.read, marks.landmarks, marks.valid, fit)
        shown = {i: reader.read(i) for i in (0, 7, 120, 300)}
    return marks, fit, stable, shown


@pytest.mark.slow
def test_may_stabilized_pose_fits_the_landmarks(may, artifacts_dir):
    marks, fit, stable, shown = may
    assert 1.5 * 512 < fit.focal < 4 * 512 and 0.7 < fit.scale < 1.3
    uv = project(fit.template, stable.rot, stable.trans, fit.focal, fit.cx, fit.cy)      # [T,468,2]
    error = np.linalg.norm(uv[:, RIGID_LANDMARKS] - marks.landmarks[:, RIGID_LANDMARKS], axis=-1)
    per_frame = error[marks.valid].mean(1)
    assert per_frame.mean() <= 3.0
    assert per_frame.max() <= 4.0   # a sudden turn (frames 3-10) is followed, not smoothed away
    assert stable.keypoints >= 50
    # For a person to look at: landmarks green, the template drawn with the stabilized pose red.
    tiles = []
    for i, frame in shown.items():
        img = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        for points, colour in ((marks.landmarks[i], (0, 255, 0)), (uv[i], (0, 0, 255))):
            for x, y in points[RIGID_LANDMARKS] - 0.5:
                cv2.circle(img, (round(x), round(y)), 2, colour, -1)
        tiles.append(img)
    cv2.imwrite(str(artifacts_dir / "may_stabilized_pose.png"), np.concatenate(tiles, 1))


@pytest.mark.slow
def test_may_stabilized_pose_is_steadier(may):
    _, fit, stable, _ = may
    raw, steady = _jitter(fit.rot, fit.trans), _jitter(stable.rot, stable.trans)
    assert steady[0] <= 0.5 * raw[0] and steady[1] <= 0.5 * raw[1], (steady, raw)
