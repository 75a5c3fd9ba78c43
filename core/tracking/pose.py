"""Head pose from 2D landmarks (SyncTalk++ Eq. 7-8): a coarse-to-fine search of the focal length, then
per-frame rotation and translation of the 3D face template at that focal length.

Camera convention (OpenCV pinhole): x right, y down, z forward, away from the camera. Head space is the
canonical template (core.tracking.template, +y up, +z toward the viewer) turned into the same axes by
flipping y and z, so a face looking straight into the camera has rotation I. A head point X (template
units times `scale`) lies at R X + t in camera space and projects to (focal * x / z + cx, focal * y / z + cy),
with (cx, cy) the image centre in the landmarks' pixel convention (pixel i spans [i, i + 1)).

Focal length and distance trade off only through perspective (how the face's depth bends its image), so
the focal search pools many frames. No real face is the canonical one (its rigid landmarks miss a real face's
by several pixels), so after the focal search the template's
vertices are fitted to the subject (`PoseFit.template`), held to the canonical shape where the
views leave them open (mostly depth). The overall size is a free gauge of a monocular fit: `scale` is set
from the irises (about 11.7 mm across in adults) when the landmarks have them, else 1.
Draw the subject with project(fit.template, rot, trans, fit.focal, fit.cx, fit.cy).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from core.jobs import CancelToken, Progress, ProgressFn
from core.tracking.template import LEFT_EYE, LEFT_IRIS, RIGHT_EYE, RIGHT_IRIS, RIGID_LANDMARKS, canonical_mesh

# Template axes (+y up, +z toward the viewer) -> head axes (+y down, +z away from the camera).
_TEMPLATE_TO_HEAD = np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class PoseConfig:
    focal_min: float = 0.4          # focal search range, multiples of the image width
    focal_max: float = 5.0
    coarse_steps: int = 15          # log-spaced focal lengths of the coarse search
    refine_iterations: int = 4      # each narrows the search to the best value's neighbours
    refine_steps: int = 5           # focal lengths tried per refinement
    search_frames: int = 80         # valid frames (evenly spread) that the focal search pools
    landmark_ids: tuple[int, ...] = ()  # landmarks the fit uses; () = template.RIGID_LANDMARKS
    shape_iterations: int = 2       # rounds of fitting the subject's template shape; 0 keeps the canonical one
    shape_prior: float = 0.05       # pull of the canonical shape against each frame's landmarks
    iris_diameter_cm: float = 1.17  # sets `scale` from the irises; 0 keeps the template's own size

    def __post_init__(self) -> None:
        if not 0 < self.focal_min < self.focal_max:
            raise ValueError(f"need 0 < focal_min < focal_max, got {self.focal_min}, {self.focal_max}")
        if self.coarse_steps < 3 or self.refine_steps < 3:
            raise ValueError("coarse_steps and refine_steps must be at least 3")
        if self.search_frames < 1 or self.refine_iterations < 0 or self.shape_iterations < 0:
            raise ValueError("search_frames must be >= 1, refine_iterations and shape_iterations >= 0")
        if self.shape_prior <= 0:
            raise ValueError(f"shape_prior must be > 0, got {self.shape_prior}")
        if self.landmark_ids and (len(self.landmark_ids) < 6 or not all(0 <= i < 468 for i in self.landmark_ids)):
            raise ValueError(f"landmark_ids must be at least 6 template vertices (0..467), got {self.landmark_ids}")


@dataclass
class PoseFit:
    """The raw per-frame fit: camera intrinsics (px), the subject's template and its pose in every frame."""

    focal: float
    cx: float
    cy: float
    scale: float             # per-subject scale of the template (one number for the clip)
    template: np.ndarray     # float32 [468,3] the subject's template in head space: canonical, fitted, times scale
    rot: np.ndarray          # float32 [T,3,3] camera-from-head rotation
    trans: np.ndarray        # float32 [T,3] camera-from-head translation (same units as the scaled template)
    reproj_px: np.ndarray    # float32 [T] mean reprojection error of rigid landmarks, px (nan where invalid)


def head_vertices() -> np.ndarray:
    """The template's vertices in head space (x right, y down, z away from the camera), cm: float32 [468,3]."""
    return (canonical_mesh().vertices * _TEMPLATE_TO_HEAD).astype(np.float32)


def project(points: np.ndarray, rot: np.ndarray, trans: np.ndarray, focal: float, cx: float, cy: float
            ) -> np.ndarray:
    """Head-space points [N,3] or [T,N,3] -> pixels [T,N,2] under poses rot [T,3,3], trans [T,3].

    A single pose (rot [3,3], trans [3]) with points [N,3] gives [N,2].
    """
    rot = np.asarray(rot, np.float64)
    trans = np.asarray(trans, np.float64)
    cam = np.einsum("...ij,...nj->...ni", rot, np.asarray(points, np.float64)) + trans[..., None, :]  # [T,N,3]
    uv = focal * cam[..., :2] / cam[..., 2:3] + np.array([cx, cy])
    return uv.astype(np.float32)


def euler_degrees(rot: np.ndarray) -> np.ndarray:
    """Rotations [T,3,3] -> [T,3] yaw, pitch, roll in degrees, for curves a person reads.

    R = Ry(yaw) Rx(pitch) Rz(roll), right-handed about the camera's y (down), x (right) and z (forward) axes:
    yaw > 0 turns the face toward the image's left, pitch > 0 tilts it down, roll > 0 turns it clockwise
    in the image. Frontal is (0, 0, 0).
    """
    r = np.asarray(rot, np.float64)
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1)).astype(np.float32)


def checked_landmarks(landmarks: np.ndarray, valid: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks [T,468+,2] as ``dtype`` and valid [T] as bool; ValueError naming the shape that is off."""
    landmarks = np.asarray(landmarks, dtype)
    valid = np.asarray(valid, bool)
    if landmarks.ndim != 3 or landmarks.shape[1] < 468 or landmarks.shape[2] != 2:
        raise ValueError(f"landmarks must be [T,468+,2], got {landmarks.shape}")
    if valid.shape != landmarks.shape[:1]:
        raise ValueError(f"valid must be [{len(landmarks)}], got {valid.shape}")
    return landmarks, valid


def fit_pose(landmarks: np.ndarray, valid: np.ndarray, size: tuple[int, int], config: PoseConfig = PoseConfig(),
             progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> PoseFit:
    """Fit the template to landmarks [T,468+,2] (px) of the `valid` frames of a (W, H) clip.

    Eq. 7: the focal length minimising the landmarks' reprojection error over a spread of frames, searched
    on a log grid and then refined around the best value; then the subject's template shape on those
    frames; Eq. 8: each frame's R, t (SQPnP, then Levenberg-Marquardt) at that focal length.
    Frames that are not valid get poses interpolated from their valid neighbours and reproj_px = nan.
    ValueError when no frame is valid.
    """
    progress = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    landmarks, valid = checked_landmarks(landmarks, valid, np.float64)
    ids = np.asarray(config.landmark_ids or RIGID_LANDMARKS)
    img = np.ascontiguousarray(landmarks[:, ids])           # [T,N,2]
    valid = valid & np.isfinite(img).all(axis=(1, 2))
    frames = np.flatnonzero(valid)
    if frames.size == 0:
        raise ValueError("fit_pose: no valid frames - no face was found in any frame of the clip")
    width, height = size
    cx, cy = width / 2.0, height / 2.0

    # Eq. 7: coarse-to-fine focal search on up to search_frames frames, the subject's shape fitted anew at
    # each focal length: with the canonical shape, a face 8% wider and 6% shorter than it moves the best
    # focal length by 40%; with its own shape the best is within a few percent.
    search = frames[np.unique(np.linspace(0, frames.size - 1, min(config.search_frames, frames.size)).round()
                              .astype(int))]
    rounds = 1 + config.refine_iterations
    tried: dict[float, tuple[float, np.ndarray]] = {}  # focal -> (mean squared error, shape)
    candidates = np.geomspace(config.focal_min, config.focal_max, config.coarse_steps) * width
    for k in range(rounds):
        cancel.check("Head pose fit")
        for f in candidates:
            if f not in tried:
                tried[f] = _shape_at(landmarks[search], ids, f, cx, cy, config)
        grid = np.array(sorted(tried))
        best = int(np.argmin([tried[f][0] for f in grid]))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        candidates = np.geomspace(lo, hi, config.refine_steps)
        progress(Progress(0.8 * (k + 1) / rounds, "Searching the focal length"))
    focal = float(grid[best])
    shape = tried[focal][1]                                 # [468,3]
    obj = shape[ids]                                        # [N,3]
    cam = _camera(focal, cx, cy)

    # Eq. 8: per-frame pose.
    rvecs = np.zeros((len(valid), 3))
    tvecs = np.zeros((len(valid), 3))
    reproj = np.full(len(valid), np.nan)
    for n, t in enumerate(frames):
        if n % 256 == 0:
            cancel.check("Head pose fit")
            progress(Progress(0.8 + 0.2 * n / frames.size, "Fitting the head pose"))
        rvecs[t], tvecs[t], residual = _solve(obj, img[t], cam)
        reproj[t] = np.linalg.norm(residual, axis=-1).mean()

    scale = _iris_scale(landmarks[frames], shape, rvecs[frames], tvecs[frames], focal, config.iris_diameter_cm)
    rot, trans = _fill_invalid(rvecs, tvecs * scale, valid)
    progress(Progress(1.0, f"Head pose fitted (focal {focal:.0f} px)"))
    return PoseFit(focal=focal, cx=cx, cy=cy, scale=scale, template=(shape * scale).astype(np.float32),
                   rot=rot.astype(np.float32), trans=trans.astype(np.float32), reproj_px=reproj.astype(np.float32))


def _camera(focal: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def _solve(obj: np.ndarray, img: np.ndarray, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares pose of obj [N,3] seen at img [N,2] -> rvec [3], tvec [3], residual [N,2] px.

    SQPnP's global solution (of the object-space error) refined by Levenberg-Marquardt on the reprojection
    error: no warm start, so gaps and fast turns cannot derail it.
    """
    _, r, t = cv2.solvePnP(obj, img, cam, None, flags=cv2.SOLVEPNP_SQPNP)
    r, t = cv2.solvePnPRefineLM(obj, img, cam, None, r, t)
    uv, _ = cv2.projectPoints(obj, r, t, cam, None)
    return r.ravel(), t.ravel(), uv.reshape(-1, 2) - img


def _shape_at(landmarks: np.ndarray, ids: np.ndarray, focal: float, cx: float, cy: float, config: PoseConfig
              ) -> tuple[float, np.ndarray]:
    """Subject shape [468,3] fitted to landmarks [S,468+,2] at one focal length, and the mean squared
    reprojection error (px^2) of its `ids` landmarks when each frame is fitted with it."""
    cam = _camera(focal, cx, cy)
    img = np.ascontiguousarray(landmarks[:, ids])                                   # [S,N,2]
    shape = head_vertices().astype(np.float64)
    for _ in range(config.shape_iterations):
        poses = np.array([np.concatenate(_solve(shape[ids], frame, cam)[:2]) for frame in img])   # [S,6]
        shape = _fit_shape(landmarks[:, :468], poses, focal, cx, cy, config.shape_prior)
    error = np.mean([np.square(_solve(shape[ids], frame, cam)[2]).sum(-1).mean() for frame in img])
    return float(error), shape


def _iris_scale(landmarks: np.ndarray, shape: np.ndarray, rvecs: np.ndarray, tvecs: np.ndarray, focal: float,
                iris_cm: float) -> float:
    """Template scale that puts the eyes at the depth their irises' size in pixels implies.

    landmarks [V,478,2], the unscaled template shape [468,3] and its fit rvecs/tvecs [V,3]. Both depths grow
    with the focal length, so the ratio hardly depends on it. 1 when there are no iris landmarks or iris_cm
    is 0.
    """
    if iris_cm <= 0 or landmarks.shape[1] < 478:
        return 1.0
    rot = Rotation.from_rotvec(rvecs).as_matrix()                           # [V,3,3]
    ratios = []
    for eye, iris in ((LEFT_EYE, LEFT_IRIS), (RIGHT_EYE, RIGHT_IRIS)):
        ring = landmarks[:, iris]                                           # [V,4,2] right, top, left, bottom
        across = np.maximum(np.linalg.norm(ring[:, 0] - ring[:, 2], axis=-1),
                            np.linalg.norm(ring[:, 1] - ring[:, 3], axis=-1))  # [V] px
        centre = shape[eye].mean(0)                                          # [3]
        depth = rot[:, 2] @ centre + tvecs[:, 2]                            # [V] template units
        ratios.append(focal * iris_cm / np.maximum(across, 1e-6) / depth)
    ratios = np.concatenate(ratios)
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    return float(np.median(ratios)) if ratios.size else 1.0


def _fit_shape(landmarks: np.ndarray, poses: np.ndarray, focal: float, cx: float, cy: float, prior: float
               ) -> np.ndarray:
    """Head-space template [468,3] that best explains landmarks [S,468,2] seen under poses [S,6] (rvec, tvec).

    Each vertex on its own: the linearised reprojection equations of all S frames, in pixels, plus
    `prior` times S pulling it (in pixels at the face's distance) toward the canonical vertex. The pull
    decides what the views leave open, mostly depth when the head hardly turns.
    """
    canonical = head_vertices().astype(np.float64)                             # [V,3]
    rot = Rotation.from_rotvec(poses[:, :3]).as_matrix()                        # [S,3,3]
    trans = poses[:, 3:]                                                        # [S,3]
    norm = (landmarks - [cx, cy]) / focal                                       # [S,V,2] normalised image coords
    ok = np.isfinite(norm).all(-1)                                              # [S,V]
    norm = np.where(ok[..., None], norm, 0.0)
    depth = np.einsum("sj,vj->sv", rot[:, 2], canonical) + trans[:, None, 2]    # [S,V]
    # (r_k - n_k r_3) . X = n_k t_3 - t_k for k = x, y; rows scaled by focal / depth into pixels.
    a = rot[:, None, :2, :] - norm[..., None] * rot[:, None, 2:3, :]             # [S,V,2,3]
    b = norm * trans[:, None, 2:3] - trans[:, None, :2]                          # [S,V,2]
    w = np.where(ok, (focal / depth) ** 2, 0.0)[..., None]                       # [S,V,1]
    lhs = np.einsum("svki,svkj,svk->vij", a, a, np.broadcast_to(w, b.shape))    # [V,3,3]
    rhs = np.einsum("svki,svk,svk->vi", a, b, np.broadcast_to(w, b.shape))      # [V,3]
    stiff = prior * len(poses) * (focal / np.median(depth)) ** 2
    return np.linalg.solve(lhs + stiff * np.eye(3), (rhs + stiff * canonical)[..., None])[..., 0]


def _fill_invalid(rvecs: np.ndarray, tvecs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation vectors [T,3] and translations [T,3] known on `valid` frames -> rot [T,3,3], trans [T,3]
    everywhere: slerp / linear between valid neighbours, held beyond the ends."""
    keys = np.flatnonzero(valid)
    times = np.arange(len(valid))
    trans = np.stack([np.interp(times, keys, tvecs[keys, i]) for i in range(3)], axis=-1)
    if keys.size == 1:
        return np.repeat(Rotation.from_rotvec(rvecs[keys]).as_matrix(), len(valid), axis=0), trans
    slerp = Slerp(keys, Rotation.from_rotvec(rvecs[keys]))
    return slerp(np.clip(times, keys[0], keys[-1])).as_matrix(), trans
