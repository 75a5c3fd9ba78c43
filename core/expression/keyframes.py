"""Keyframed edits over the performance: a lane per control (a blendshape, or one of the head pose's six numbers)
holding keys, each a value at a frame and how the curve leaves it. An ``offset`` lane adds its curve to the
performance (the tracked blendshapes or an imported take; the stabilized pose), an ``override`` lane replaces the
performance by its curve; either by the lane's weight (0: the performance, 1: the full edit). Blendshapes are
clipped to [0, 1]; the pose is in degrees and the tracking's head units.

Curves follow animation tools: ``linear``; ``smooth``, a cubic Hermite with auto-clamped tangents (flat at the first
and last key and at a key that is a local extreme, Catmull-Rom slopes elsewhere: no overshoot); ``hold``, a step.
Before the first key and after the last the curve holds that key's value. Values are immutable, so an undo step is
the pair of documents before and after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.pose import euler_degrees

INTERPOLATIONS = ("smooth", "linear", "hold")
MODES = ("offset", "override")
POSE_CHANNELS = ("yaw", "pitch", "roll", "tx", "ty", "tz")   # degrees, degrees, degrees, head units ×3
BLEND_CHANNELS = tuple(n for n in BLENDSHAPE_NAMES if n != "_neutral")
CHANNELS = BLEND_CHANNELS + POSE_CHANNELS
STABILIZER_RANGE = (0.0, 4.0)  # the stabilizer's strength: its smoothness term times this (1: as tracked)
FORMAT = 1  # the saved document's version


@dataclass(frozen=True)
class Key:
    frame: int
    value: float              # the offset at ``frame``
    interp: str = "smooth"    # how the curve goes on to the next key

    def __post_init__(self) -> None:
        if self.interp not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interp!r} is not one of {', '.join(INTERPOLATIONS)}")


@dataclass(frozen=True)
class Lane:
    """One control's keys, sorted by frame (one per frame), the weight its curve is applied with, and whether the
    curve is added to the performance or replaces it."""

    keys: tuple[Key, ...] = ()
    weight: float = 1.0
    mode: str = "offset"

    def __post_init__(self) -> None:
        frames = [k.frame for k in self.keys]
        if frames != sorted(set(frames)):
            raise ValueError(f"a lane's keys must be on distinct frames in order, got {frames}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"a lane's weight is within 0..1, got {self.weight}")
        if self.mode not in MODES:
            raise ValueError(f"a lane's mode is one of {', '.join(MODES)}, got {self.mode!r}")

    def over(self, base: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """float64 [N]: the performance ``base`` [N] at ``frames`` [N] with this lane's edit."""
        base = np.asarray(base, np.float64)
        if not self.keys:
            return base
        curve = self.at(frames)
        return base + self.weight * (curve if self.mode == "offset" else curve - base)

    def key_for(self, base: float, edited: float) -> float:
        """The key value at which the edited value is ``edited`` where the performance is ``base``."""
        w = self.weight or 1.0
        return (edited - base) / w if self.mode == "offset" else base + (edited - base) / w

    def key_at(self, frame: int) -> Key | None:
        return next((k for k in self.keys if k.frame == frame), None)

    def with_key(self, frame: int, value: float, interp: str | None = None) -> Lane:
        """This lane with a key of ``value`` at ``frame`` (replacing one there, keeping its interpolation unless
        ``interp`` is given)."""
        old = self.key_at(frame)
        key = Key(int(frame), float(value), interp or (old.interp if old else "smooth"))
        return replace(self, keys=tuple(sorted([k for k in self.keys if k.frame != frame] + [key],
                                               key=lambda k: k.frame)))

    def without_key(self, frame: int) -> Lane:
        return replace(self, keys=tuple(k for k in self.keys if k.frame != frame))

    def moved(self, frame: int, to: int, copy: bool = False) -> Lane:
        """The key at ``frame`` moved (or copied) to ``to``, replacing any key there."""
        key = self.key_at(frame)
        if key is None or frame == to:
            return self
        lane = self if copy else self.without_key(frame)
        return lane.with_key(to, key.value, key.interp)

    def curve(self, frames: int) -> np.ndarray:
        """float64 [frames]: the offset at every frame (zero for a lane without keys)."""
        return self.at(np.arange(frames))

    def at(self, frames: np.ndarray) -> np.ndarray:
        """float64 [N]: the offset at each of ``frames`` [N] (zero for a lane without keys)."""
        t = np.asarray(frames, np.float64)
        if not self.keys:
            return np.zeros(len(t))
        kt = np.array([k.frame for k in self.keys], np.float64)                        # [K]
        kv = np.array([k.value for k in self.keys], np.float64)                        # [K]
        out = np.where(t <= kt[0], kv[0], kv[-1])
        seg = np.searchsorted(kt, t, side="right") - 1                                 # [N] the key before t
        inside = (seg >= 0) & (seg < len(kt) - 1)
        i = seg[inside]
        t0, t1, v0, v1 = kt[i], kt[i + 1], kv[i], kv[i + 1]
        h = t1 - t0
        u = (t[inside] - t0) / h
        slopes = _auto_clamped_slopes(kt, kv)
        smooth = ((2 * u**3 - 3 * u**2 + 1) * v0 + (u**3 - 2 * u**2 + u) * h * slopes[i]
                  + (-2 * u**3 + 3 * u**2) * v1 + (u**3 - u**2) * h * slopes[i + 1])
        interp = np.array([INTERPOLATIONS.index(k.interp) for k in self.keys])[i]    # 0 smooth, 1 linear, 2 hold
        out[inside] = np.select([interp == 1, interp == 2], [v0 + (v1 - v0) * u, v0], smooth)
        return out


def _auto_clamped_slopes(kt: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """Per key, the curve's slope there: Catmull-Rom's (neighbour to neighbour), zero at the ends and where the
    key is a local extreme."""
    slopes = np.zeros(len(kt))
    if len(kt) > 2:
        before, after = kv[1:-1] - kv[:-2], kv[2:] - kv[1:-1]
        slopes[1:-1] = np.where(before * after > 0, (kv[2:] - kv[:-2]) / (kt[2:] - kt[:-2]), 0.0)
    return slopes


@dataclass(frozen=True)
class Edits:
    """The whole edit: lanes by control name (``CHANNELS``; lanes without keys are left out) and the head-pose
    stabilizer's strength."""

    lanes: dict[str, Lane] = field(default_factory=dict)
    stabilizer: float = 1.0

    def __post_init__(self) -> None:
        unknown = set(self.lanes) - set(CHANNELS)
        if unknown:
            raise ValueError(f"no control named {', '.join(sorted(unknown))}")
        low, high = STABILIZER_RANGE
        if not low <= self.stabilizer <= high:
            raise ValueError(f"the stabilizer's strength is within {low:g}..{high:g}, got {self.stabilizer}")

    def lane(self, channel: str) -> Lane:
        return self.lanes.get(channel, Lane())

    def with_lane(self, channel: str, lane: Lane) -> Edits:
        """These edits with ``channel``'s lane replaced (dropped when it is a default, empty lane)."""
        lanes = dict(self.lanes)
        if lane != Lane():
            lanes[channel] = lane
        else:
            lanes.pop(channel, None)
        return replace(self, lanes=lanes)

    def without(self, channels: list[str] | tuple[str, ...]) -> Edits:
        return replace(self, lanes={c: lane for c, lane in self.lanes.items() if c not in channels})

    @property
    def empty(self) -> bool:
        return not self.lanes and self.stabilizer == 1.0

    @property
    def posed(self) -> bool:
        """Whether a pose lane moves the head."""
        return any(c in self.lanes for c in POSE_CHANNELS)

    def apply(self, blendshapes: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """float32 [N,52] (the tracking's order): ``blendshapes`` [N,52] of ``frames`` [N] (default: 0..N-1) with
        the blendshape lanes added, clipped."""
        out = np.array(blendshapes, np.float32)
        if not self.lanes:
            return out
        frames = np.arange(len(out)) if frames is None else frames
        for c, lane in self.lanes.items():
            if c in BLEND_CHANNELS:
                j = BLENDSHAPE_NAMES.index(c)
                out[:, j] = np.clip(lane.over(out[:, j], frames), 0.0, 1.0)
        return out

    def pose(self, rot: np.ndarray, trans: np.ndarray, frames: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The head pose rot [N,3,3], trans [N,3] of ``frames`` [N] (default: 0..N-1) with the pose lanes' offsets
        (yaw/pitch/roll in degrees on ``euler_degrees``'s angles, translation in the pose's units); the same arrays
        when there are none."""
        if not self.posed:
            return rot, trans
        frames = np.arange(len(rot)) if frames is None else frames
        pose = np.concatenate([euler_degrees(rot), trans], axis=1).astype(np.float64)  # [N,6]
        for j, c in enumerate(POSE_CHANNELS):
            if c in self.lanes:
                pose[:, j] = self.lanes[c].over(pose[:, j], frames)
        return pose_rotation(pose[:, :3]).astype(rot.dtype), pose[:, 3:].astype(trans.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"stabilizer": self.stabilizer,
                "lanes": {c: {"weight": lane.weight, "mode": lane.mode,
                              "keys": [[k.frame, k.value, k.interp] for k in lane.keys]}
                          for c, lane in sorted(self.lanes.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edits:
        """Edits from ``to_dict``'s form; ValueError naming what is malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("lanes"), dict):
            raise ValueError("the edits are not a mapping with lanes of control names")
        lanes = {}
        for c, lane in data["lanes"].items():
            try:
                keys = tuple(Key(int(f), float(v), str(i)) for f, v, i in lane["keys"])
                lanes[c] = Lane(keys, float(lane.get("weight", 1.0)), str(lane.get("mode", "offset")))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"the lane {c!r} is malformed: {e}") from e
        try:
            stabilizer = float(data.get("stabilizer", 1.0))
        except (TypeError, ValueError) as e:
            raise ValueError(f"the stabilizer's strength is not a number: {e}") from e
        return cls(lanes, stabilizer)


def pose_rotation(angles: np.ndarray) -> np.ndarray:
    """float64 [T,3,3] from yaw, pitch, roll in degrees [T,3]: the inverse of ``euler_degrees``
    (R = Ry(yaw) Rx(pitch) Rz(roll))."""
    return Rotation.from_euler("YXZ", np.asarray(angles, np.float64), degrees=True).as_matrix()
