"""Head-Sync Stabilizer (SyncTalk++ Eq. 9-12): a smooth, stable head pose from flow keypoints tracked on the
face and a two-stage bundle adjustment that starts from the per-frame fit of core.tracking.pose.

(a) track_keypoints, from images: dense optical flow (DIS) on the face; the points where the Laplacian of
    the flow is strongest (Eq. 9-10: a point moving unlike its neighbourhood is a feature that can be
    followed), inside the face oval, weighted down in the eye, brow and mouth regions whose motion is not
    the skull's (the mouth's being the whole face below the nose tip); then followed frame to frame with
    pyramidal Lucas-Kanade under a forward-backward check, with new points picked whenever too few survive.
    Why LK rather than chaining the dense flow: LK matches each point's own patch again in every new frame,
    so a textured point stays sub-pixel; chained flow samples an interpolated, regularised field and adds
    its error up frame after frame, and would cost a dense field per frame (two for the backward check).
    Dense flow is computed only on the frames where points are picked.
(b) bundle_adjust, no images: Eq. 11 places the keypoints in 3D with the poses held; Eq. 12 then moves
    keypoints, rotations (axis-angle) and translations together. The loss is the weighted Huber
    reprojection error of keypoints and rigid landmarks plus the poses' acceleration across frames, squared
    while small (jitter) and linear when large (a turn starting), so real motion keeps its onsets.

Pixel positions follow the landmarks' convention (pixel i spans [i, i + 1)); OpenCV's image functions put
pixel centres on integers, hence the half-pixel shifts around them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from core.jobs import CancelToken, Progress, ProgressFn, span
from core.tracking.pose import PoseFit, checked_landmarks
from core.tracking.template import (FACE_OVAL, LEFT_BROW, LEFT_EYE, LIPS, NOSE_TIP, RIGHT_BROW, RIGHT_EYE,
                                    RIGID_LANDMARKS, canonical_mesh)

_NONRIGID_LANDMARKS = np.concatenate([LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW, LIPS])  # weighted down
_FOREHEAD, _CHIN = 10, 152  # landmarks on the face's vertical axis


@dataclass(frozen=True)
class StabilizeConfig:
    keypoints: int = 96             # K: flow keypoints kept alive on the face
    min_distance: float = 0.05      # least spacing between keypoints, fraction of the face width
    reseed_fraction: float = 0.6    # pick new keypoints when fewer than this fraction of K survive
    face_margin: float = 0.06       # keypoints stay this fraction of the face width inside the face oval
    semantic_weight: float = 0.2    # weight of eye, brow and mouth keypoints and landmarks (non-rigid)
    region_margin: float = 0.04     # the eye, brow and mouth regions grow by this fraction of the face width
    lk_window: int = 21             # Lucas-Kanade window, px
    lk_levels: int = 3              # Lucas-Kanade pyramid levels above the image
    fb_max_px: float = 1.0          # forward-backward disagreement that ends a track, px
    outlier_px: float = 3.0         # keypoints whose median residual after stage 1 exceeds this are dropped
    huber_px: float = 2.0           # reprojection errors beyond this count linearly
    landmark_weight: float = 1.0    # the landmark term's weight per point, against 1 per keypoint
    smooth_weight: float = 4.0      # pose acceleration (px-equivalent, squared) against the reprojection error
    smooth_huber_px: float = 0.15   # accelerations beyond this count linearly, so a sudden turn stays sudden
    stage1_iterations: int = 30     # LBFGS iterations placing the keypoints (Eq. 11)
    stage2_iterations: int = 150    # LBFGS iterations of the joint adjustment (Eq. 12)

    def __post_init__(self) -> None:
        if self.keypoints < 0:
            raise ValueError(f"keypoints must be >= 0, got {self.keypoints}")
        if not 0 <= self.semantic_weight <= 1:
            raise ValueError(f"semantic_weight must be in [0, 1], got {self.semantic_weight}")
        if self.lk_window < 5 or self.lk_window % 2 == 0:
            raise ValueError(f"lk_window must be odd and >= 5, got {self.lk_window}")
        if min(self.huber_px, self.smooth_huber_px, self.fb_max_px, self.outlier_px) <= 0 or self.smooth_weight < 0:
            raise ValueError("huber_px, smooth_huber_px, fb_max_px and outlier_px must be > 0, smooth_weight >= 0")


@dataclass
class Tracks:
    """Keypoint observations, one row each. Sparse rather than a dense [T,K] grid: over minutes of footage
    keypoints are picked again and again, so K grows with T and a grid would grow with T^2."""

    frame: np.ndarray    # int32 [M] frame of the observation
    point: np.ndarray    # int32 [M] keypoint id, 0..K-1
    uv: np.ndarray       # float32 [M,2] px
    weights: np.ndarray  # float32 [K] semantic weight of each keypoint

    def __len__(self) -> int:
        return len(self.weights)

    def arrays(self) -> dict[str, np.ndarray]:
        """The tracks as named arrays, to save (``Tracks(**arrays)`` reads them back)."""
        return {"frame": self.frame, "point": self.point, "uv": self.uv, "weights": self.weights}


@dataclass
class Stabilized:
    rot: np.ndarray    # float32 [T,3,3]
    trans: np.ndarray  # float32 [T,3]
    keypoints: int     # number of flow keypoints used
    tracks: Tracks     # the keypoint observations: bundle_adjust again from them, without images


def stabilize(frames: Callable[[int], np.ndarray], landmarks: np.ndarray, valid: np.ndarray, fit: PoseFit,
              config: StabilizeConfig = StabilizeConfig(), progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> Stabilized:
    """Stable per-frame pose: frames(i) -> uint8 [H,W,3] RGB, landmarks [T,468+,2] px, valid [T], the raw fit."""
    progress = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    landmarks, valid = checked_landmarks(landmarks, valid, np.float32)
    if not len(landmarks) == len(fit.rot) == len(fit.trans):
        raise ValueError(f"clip lengths differ: landmarks {len(landmarks)}, fit {len(fit.rot)}")
    if not valid.any():
        raise ValueError("stabilize: no valid frames - no face was found in any frame of the clip")
    tracks = track_keypoints(frames, landmarks, valid, config, span(progress, 0.0, 0.6), cancel)
    return bundle_adjust(tracks, landmarks, valid, fit, config, span(progress, 0.6, 1.0), cancel)


def track_keypoints(frames: Callable[[int], np.ndarray], landmarks: np.ndarray, valid: np.ndarray,
                    config: StabilizeConfig = StabilizeConfig(), progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> Tracks:
    """Pick flow keypoints on the face and follow them through the valid frames (part (a)).

    A track ends at an invalid frame, when Lucas-Kanade loses it, when its forward-backward error exceeds
    fb_max_px, or when it leaves the face oval; each frame with fewer than reseed_fraction * K live tracks
    gets new keypoints up to K.
    """
    progress = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    landmarks = np.asarray(landmarks, np.float32)
    valid = np.asarray(valid, bool)
    lk = dict(winSize=(config.lk_window, config.lk_window), maxLevel=config.lk_levels,
              criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01))
    pts = np.zeros((0, 2), np.float32)   # [n,2] live tracks, OpenCV pixel coordinates
    ids = np.zeros(0, np.int32)          # [n] their keypoint ids
    frame_obs, point_obs, uv_obs, weights = [], [], [], []
    next_id = 0
    prev = None                          # previous frame's grey image, None after an invalid frame
    for t in range(len(valid)):
        if t % 32 == 0:
            cancel.check("Head pose stabilizer")
            progress(Progress(t / len(valid), "Tracking face keypoints"))
        if not valid[t]:
            prev, pts, ids = None, pts[:0], ids[:0]
            continue
        grey = cv2.cvtColor(np.ascontiguousarray(frames(t)), cv2.COLOR_RGB2GRAY)
        marks = landmarks[t] - 0.5                                           # [478,2] OpenCV pixels
        width = _face_width(marks)
        oval = marks[FACE_OVAL]
        if prev is not None and len(pts):
            nxt, ok, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None, **lk)
            back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey, prev, nxt, None, **lk)
            keep = (ok.ravel() == 1) & (ok_back.ravel() == 1)
            keep &= np.linalg.norm(back - pts, axis=1) < config.fb_max_px
            keep &= _inside_convex(nxt, oval, -config.face_margin * width)
            pts, ids = nxt[keep], ids[keep]
        if len(pts) < config.reseed_fraction * config.keypoints:
            other = prev if prev is not None else _neighbour_grey(frames, valid, t)
            if other is not None:
                new, new_weights = select_keypoints(grey, other, marks, pts, config.keypoints - len(pts), config)
                weights.append(new_weights)
                pts = np.concatenate([pts, new])
                ids = np.concatenate([ids, np.arange(next_id, next_id + len(new), dtype=np.int32)])
                next_id += len(new)
        frame_obs.append(np.full(len(pts), t, np.int32))
        point_obs.append(ids)
        uv_obs.append(pts + 0.5)
        prev = grey
    progress(Progress(1.0, "Face keypoints tracked"))
    return Tracks(frame=np.concatenate(frame_obs or [np.zeros(0, np.int32)]),
                  point=np.concatenate(point_obs or [np.zeros(0, np.int32)]),
                  uv=np.concatenate(uv_obs or [np.zeros((0, 2), np.float32)]).astype(np.float32),
                  weights=np.concatenate(weights or [np.zeros(0, np.float32)]).astype(np.float32))


def select_keypoints(grey: np.ndarray, other: np.ndarray, marks: np.ndarray, taken: np.ndarray, count: int,
                     config: StabilizeConfig = StabilizeConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` new keypoints [n,2] of `grey` and their semantic weights [n] (Eq. 9-10).

    Picks the points where the Laplacian of the flow to `other` is strongest, times their semantic
    weight (so the eyes, brows and mouth yield a point only where it is much stronger), face_margin
    inside the face oval of the frame's landmarks marks [478,2], min_distance from each other and from
    the `taken` [k,2] ones. All positions in OpenCV pixels. Candidates must be at least as textured
    (structure tensor's smaller eigenvalue) as the face's median, so that a point picked for its flow is
    also one Lucas-Kanade can lock onto; the Laplacian is blurred to quiet the flow's block edges.
    """
    none = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    width = _face_width(marks)
    min_distance, margin = config.min_distance * width, config.face_margin * width
    oval = marks[FACE_OVAL]
    h, w = grey.shape
    x0, y0 = np.maximum(np.floor(oval.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(oval.max(0)).astype(int) + 3, [w, h])
    if count <= 0 or x1 - x0 < 16 or y1 - y0 < 16:
        return none
    a, b = np.ascontiguousarray(grey[y0:y1, x0:x1]), np.ascontiguousarray(other[y0:y1, x0:x1])
    field = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)   # [h,w,2]
    lap = cv2.Laplacian(field, cv2.CV_32F, ksize=3)                                          # [h,w,2]
    score = cv2.GaussianBlur(np.linalg.norm(lap, axis=-1), (0, 0), 2.0)                      # [h,w] |lap flow|
    mask = np.zeros(a.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(cv2.convexHull((oval - [x0, y0]).astype(np.float32))).astype(np.int32), 1)
    if margin > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(margin) + 1,) * 2))
    if not mask.any():
        return none
    texture = cv2.cornerMinEigenVal(a, 5)
    free = ((mask > 0) & (texture >= np.median(texture[mask > 0]))).astype(np.uint8)
    radius = max(int(round(min_distance)), 1)
    for p in np.round(taken - [x0, y0]).astype(np.int32):
        cv2.circle(free, (int(p[0]), int(p[1])), radius, 0, -1)
    score *= free
    cy, cx = np.nonzero((score == cv2.dilate(score, np.ones((5, 5), np.uint8))) & (score > 0))   # local maxima
    found = np.stack([cx + x0, cy + y0], -1).astype(np.float32)                                # [c,2]
    weight = semantic_weights(found, marks, config.semantic_weight, config.region_margin * width)
    order = np.argsort(-score[cy, cx] * weight)[:20 * count]
    candidates, weight = found[order], weight[order]                                           # best first
    chosen: list[int] = []
    for i, p in enumerate(candidates):
        if not chosen or np.min(np.linalg.norm(candidates[chosen] - p, axis=1)) >= min_distance:
            chosen.append(i)
            if len(chosen) == count:
                break
    return candidates[chosen], weight[chosen]


def semantic_weights(points: np.ndarray, marks: np.ndarray, low: float, margin: float) -> np.ndarray:
    """Weights [n] of points [n,2] px: `low` in the eye, brow and mouth regions of a frame's landmarks
    [478,2], 1 elsewhere.

    Eye and brow regions are their landmarks' hulls grown by `margin` px. The mouth region is the whole
    face below the nose tip (along the face's own vertical axis): speech moves the cheeks and chin with
    the lips, and keypoints there would make the head nod as the jaw opens.
    """
    inside = np.zeros(len(points), bool)
    for region in (LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW):
        inside |= _inside_convex(points, marks[region], margin)
    down = marks[_CHIN] - marks[_FOREHEAD]
    inside |= (points - marks[NOSE_TIP]) @ (down / max(np.linalg.norm(down), 1e-9)) > 0
    return np.where(inside, low, 1.0).astype(np.float32)


def _neighbour_grey(frames: Callable[[int], np.ndarray], valid: np.ndarray, t: int) -> np.ndarray | None:
    """Grey image of a valid frame next to t (the flow partner of a track's first frame), None if none is."""
    for s in (t + 1, t - 1):
        if 0 <= s < len(valid) and valid[s]:
            return cv2.cvtColor(np.ascontiguousarray(frames(s)), cv2.COLOR_RGB2GRAY)
    return None


def _face_width(marks: np.ndarray) -> float:
    """Width of the face oval of landmarks [478,2], px."""
    oval = marks[FACE_OVAL]
    return float(oval[:, 0].max() - oval[:, 0].min())


def _inside_convex(points: np.ndarray, polygon: np.ndarray, margin: float) -> np.ndarray:
    """bool [n]: points [n,2] within `margin` px of the convex hull of polygon [m,2] (margin < 0: that far
    inside it)."""
    hull = cv2.convexHull(np.asarray(polygon, np.float32)).reshape(-1, 2).astype(np.float64)   # [h,2]
    edge = np.roll(hull, -1, axis=0) - hull                                                      # [h,2]
    area = np.sum(hull[:, 0] * np.roll(hull[:, 1], -1) - np.roll(hull[:, 0], -1) * hull[:, 1])
    normal = np.stack([-edge[:, 1], edge[:, 0]], -1) * np.sign(area)                             # inward
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    dist = np.einsum("nhk,hk->nh", np.asarray(points, np.float64)[:, None] - hull[None], normal)  # [n,h]
    return (dist >= -margin).all(axis=1)


def bundle_adjust(tracks: Tracks, landmarks: np.ndarray, valid: np.ndarray, fit: PoseFit,
                  config: StabilizeConfig = StabilizeConfig(), progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> Stabilized:
    """Two-stage bundle adjustment (part (b)) from the raw fit's poses; no images needed.

    Stage 1 (Eq. 11) places each keypoint in head space with the poses held, starting from where its first
    observation's ray meets the posed template; keypoints that still miss by more than outlier_px (median)
    are dropped as non-rigid or lost. Stage 2 (Eq. 12) adjusts keypoints, rotations and translations
    together. Unknowns are scaled so one unit moves the image about a pixel, which keeps LBFGS well
    conditioned; the smoothness term penalises each frame's pose acceleration in those same units (Huber).
    """
    progress = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    valid = np.asarray(valid, bool)
    n_frames = len(valid)
    dtype = torch.float32
    template = np.asarray(fit.template, np.float64)                             # [468,3] head space
    rvec0 = Rotation.from_matrix(np.asarray(fit.rot, np.float64)).as_rotvec()    # [T,3]
    trans0 = np.asarray(fit.trans, np.float64)                                   # [T,3]
    depth = float(np.median(trans0[valid, 2]))
    radius = float(np.sqrt(np.mean(np.sum((template[RIGID_LANDMARKS] - template[RIGID_LANDMARKS].mean(0)) ** 2,
                                          axis=1))))
    px = fit.focal / depth                                                       # px per head unit, sideways
    rot_unit = 1.0 / (px * radius)                                               # radians per px
    trans_unit = np.array([1.0 / px, 1.0 / px, depth / (px * radius)])           # head units per px

    # Landmark term: rigid landmarks of the valid frames, semantic weights on the eye corners among them.
    lm_ids = np.asarray(RIGID_LANDMARKS)
    lm_frames = np.flatnonzero(valid)
    lm_uv = torch.as_tensor(np.asarray(landmarks, np.float64)[lm_frames][:, lm_ids], dtype=dtype)   # [V,N,2]
    lm_w = torch.as_tensor(np.where(np.isin(lm_ids, _NONRIGID_LANDMARKS), config.semantic_weight,
                                    1.0) * config.landmark_weight, dtype=dtype)                        # [N]
    lm_xyz = torch.as_tensor(template[lm_ids], dtype=dtype)                                            # [N,3]
    lm_frames_t = torch.as_tensor(lm_frames)

    # Keypoint term.
    first = _first_observations(tracks)
    points0 = _lift(tracks.uv[first], tracks.frame[first], fit, template)       # [K,3] head space
    obs_frame = torch.as_tensor(tracks.frame, dtype=torch.long)                  # [M]
    obs_point = torch.as_tensor(tracks.point, dtype=torch.long)                  # [M]
    obs_uv = torch.as_tensor(tracks.uv, dtype=dtype)                             # [M,2]
    kp_w = torch.as_tensor(tracks.weights, dtype=dtype)                          # [K]
    norm = float(kp_w[obs_point].sum() + lm_w.sum() * len(lm_frames)) or 1.0     # total data weight

    focal, centre = fit.focal, torch.tensor([fit.cx, fit.cy], dtype=dtype)
    rvec0_t, trans0_t = torch.as_tensor(rvec0, dtype=dtype), torch.as_tensor(trans0, dtype=dtype)
    points0_t = torch.as_tensor(points0, dtype=dtype)
    unit_t = torch.as_tensor(trans_unit, dtype=dtype)
    d_rot = torch.zeros(n_frames, 3, dtype=dtype, requires_grad=True)            # px-scaled unknowns
    d_trans = torch.zeros(n_frames, 3, dtype=dtype, requires_grad=True)
    d_points = torch.zeros(len(tracks), 3, dtype=dtype, requires_grad=True)

    def huber(r: torch.Tensor, delta: float = config.huber_px) -> torch.Tensor:
        return torch.where(r < delta, 0.5 * r.square(), delta * (r - 0.5 * delta))

    def poses() -> tuple[torch.Tensor, torch.Tensor]:
        return _rodrigues(rvec0_t + d_rot * rot_unit), trans0_t + d_trans * unit_t   # [T,3,3], [T,3]

    def errors(rot: torch.Tensor, trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reprojection errors (px) of the keypoint observations [M] and the landmarks [V,N]."""
        pts = points0_t + d_points / px
        rotated = torch.einsum("mij,mj->mi", rot.index_select(0, obs_frame), pts.index_select(0, obs_point))
        cam = rotated + trans.index_select(0, obs_frame)                                          # [M,3]
        kp = focal * cam[:, :2] / cam[:, 2:] + centre - obs_uv
        rotated = (rot.index_select(0, lm_frames_t).reshape(-1, 3) @ lm_xyz.T).reshape(-1, 3, len(lm_xyz))
        cam = rotated.transpose(1, 2) + trans.index_select(0, lm_frames_t)[:, None]               # [V,N,3]
        lm = focal * cam[..., :2] / cam[..., 2:] + centre - lm_uv
        return torch.sqrt(kp.square().sum(-1) + 1e-12), torch.sqrt(lm.square().sum(-1) + 1e-12)

    def loss(point_w: torch.Tensor, smooth: bool) -> torch.Tensor:
        kp, lm = errors(*poses())
        total = ((huber(kp) * point_w[obs_point]).sum() + (huber(lm) * lm_w).sum()) / norm
        if smooth and n_frames > 2:
            pose = torch.cat([d_rot + rvec0_t / rot_unit, d_trans + trans0_t / unit_t], 1)     # [T,6] px units
            accel = pose[2:] - 2 * pose[1:-1] + pose[:-2]                                     # [T-2,6]
            a = torch.sqrt(accel.square().sum(1) + 1e-12)                                     # [T-2]
            total = total + config.smooth_weight * 2 * huber(a, config.smooth_huber_px).mean()
        return total

    # Stage 1 (Eq. 11): keypoints only, poses held.
    _minimize([d_points], lambda: loss(kp_w, smooth=False), config.stage1_iterations,
              span(progress, 0.0, 0.2), cancel)
    with torch.no_grad():
        median = _median_by_group(errors(*poses())[0].numpy(), tracks.point, len(tracks))   # [K] px
        kp_w = torch.where(torch.as_tensor(median <= config.outlier_px), kp_w, torch.zeros_like(kp_w))
    cancel.check("Head pose stabilizer")

    # Stage 2 (Eq. 12): keypoints, rotations and translations together, with smoothness.
    _minimize([d_points, d_rot, d_trans], lambda: loss(kp_w, smooth=True), config.stage2_iterations,
              span(progress, 0.2, 1.0), cancel)
    with torch.no_grad():
        rot, trans = poses()
    # The stabilizer takes out jitter; it has no better evidence than the raw fit of where the clip as a
    # whole sits, so it keeps the raw fit's mean position (over valid frames) rather than drifting it.
    trans = trans + torch.as_tensor(trans0[valid].mean(0) - trans[valid].numpy().mean(0), dtype=dtype)
    used = int(torch.count_nonzero(kp_w > 0))
    progress(Progress(1.0, f"Head pose stabilized with {used} keypoints"))
    return Stabilized(rot=rot.numpy().astype(np.float32), trans=trans.numpy().astype(np.float32), keypoints=used,
                      tracks=tracks)


def restabilize(tracking: dict[str, np.ndarray], tracks: Tracks, strength: float,
                config: StabilizeConfig = StabilizeConfig(), progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> Stabilized:
    """The stabilized pose again from a tracking's raw fit and its keypoint ``tracks``, with the smoothness term
    ``strength`` times the config's (1: the tracking's own result; 0: no smoothing; more: steadier)."""
    fit = PoseFit(float(tracking["focal"]), float(tracking["cx"]), float(tracking["cy"]), float(tracking["scale"]),
                  tracking["template"], tracking["rot_raw"], tracking["trans_raw"], tracking["reproj_px"])
    return bundle_adjust(tracks, tracking["landmarks"], tracking["valid"], fit,
                         replace(config, smooth_weight=config.smooth_weight * strength), progress, cancel)


def _minimize(params: list[torch.Tensor], objective: Callable[[], torch.Tensor], iterations: int,
              progress: ProgressFn, cancel: CancelToken) -> None:
    """LBFGS with a strong-Wolfe line search for up to `iterations` iterations."""
    if iterations <= 0:
        return
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)
    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        cancel.check("Head pose stabilizer")
        opt.zero_grad()
        value = objective()
        value.backward()
        evals += 1
        if evals % 10 == 0:
            progress(Progress(min(evals / (1.25 * iterations), 1.0), "Bundle adjustment"))
        return value

    opt.step(closure)


def _rodrigues(rvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle [T,3] -> rotation matrices [T,3,3], with the series near zero angle."""
    x, y, z = rvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rvec.shape[:-1], 3, 3)
    theta2 = rvec.square().sum(-1)
    small = theta2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = torch.sqrt(safe2)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)[..., None, None]
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / safe2)[..., None, None]
    eye = torch.eye(3, dtype=rvec.dtype).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


def _first_observations(tracks: Tracks) -> np.ndarray:
    """Index [K] of each keypoint's first observation (observations are in frame order)."""
    _, first = np.unique(tracks.point, return_index=True)
    return first


def _median_by_group(values: np.ndarray, group: np.ndarray, count: int) -> np.ndarray:
    """Median [count] of values [M] per group id [M] (lower median; inf for empty groups)."""
    order = np.lexsort((values, group))
    sizes = np.bincount(group, minlength=count)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.full(count, np.inf)
    has = sizes > 0
    out[has] = values[order][starts[has] + (sizes[has] - 1) // 2]
    return out


def _lift(uv: np.ndarray, frame: np.ndarray, fit: PoseFit, template: np.ndarray) -> np.ndarray:
    """Head-space points [K,3] where the rays through uv [K,2] (seen in frames [K]) meet the template
    [468,3] posed by the raw fit; a point off the mesh takes the depth of the nearest vertex."""
    triangles = canonical_mesh().triangles                                            # [F,3]
    centre = np.array([fit.cx, fit.cy])
    out = np.zeros((len(uv), 3))
    for f in np.unique(frame):
        sel = frame == f
        rot, trans = np.asarray(fit.rot[f], np.float64), np.asarray(fit.trans[f], np.float64)
        cam = template @ rot.T + trans                                                # [V,3]
        pix = fit.focal * cam[:, :2] / cam[:, 2:] + centre                            # [V,2]
        p = np.asarray(uv[sel], np.float64)                                           # [n,2]
        corner = pix[triangles]                                                       # [F,3,2]
        e1, e2 = corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]             # [F,2]
        rel = p[:, None] - corner[None, :, 0]                                         # [n,F,2]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]                               # [F]
        det = np.where(np.abs(det) > 1e-9, det, np.inf)
        b1 = (rel[..., 0] * e2[:, 1] - rel[..., 1] * e2[:, 0]) / det                  # [n,F]
        b2 = (e1[:, 0] * rel[..., 1] - e1[:, 1] * rel[..., 0]) / det
        b0 = 1 - b1 - b2
        zc = cam[triangles, 2]                                                        # [F,3]
        z = b0 * zc[:, 0] + b1 * zc[:, 1] + b2 * zc[:, 2]                             # [n,F]
        z = np.where((b0 >= 0) & (b1 >= 0) & (b2 >= 0) & np.isfinite(det), z, np.inf).min(1)   # front surface
        nearest = np.argmin(np.linalg.norm(p[:, None] - pix[None], axis=-1), axis=1)
        z = np.where(np.isfinite(z), z, cam[nearest, 2])                              # [n]
        ray = np.concatenate([(p - centre) / fit.focal, np.ones((len(p), 1))], 1) * z[:, None]
        out[sel] = (ray - trans) @ rot
    return out
