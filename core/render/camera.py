"""Pinhole camera shared by every renderer: OpenCV convention (x right, y down, z forward)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """A world->camera view matrix with pixel intrinsics; pixel (i, j) is centred at (i + .5, j + .5).

    Values compare and hash by content, so a renderer can tell whether the view changed.
    """

    view: np.ndarray  # [4, 4] float64, world -> camera
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        view = np.array(self.view, dtype=np.float64)  # [4, 4]
        if view.shape != (4, 4) or not np.isfinite(view).all():
            raise ValueError(f"camera view must be a finite 4x4 matrix, got shape {view.shape}")
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"camera size must be at least 1x1, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        view.setflags(write=False)
        object.__setattr__(self, "view", view)
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return np.array_equal(self.view, other.view) and self._scalars() == other._scalars()

    def __hash__(self) -> int:
        return hash((self.view.tobytes(), self._scalars()))

    def _scalars(self) -> tuple[float, float, float, float, int, int]:
        return (self.fx, self.fy, self.cx, self.cy, self.width, self.height)

    @property
    def K(self) -> np.ndarray:
        """Intrinsic matrix [3, 3] float64."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def centre(self) -> np.ndarray:
        """Camera position in world coordinates [3] float64 (-R^T t)."""
        rot, trans = self.view[:3, :3], self.view[:3, 3]  # [3, 3], [3]
        return -rot.T @ trans

    @classmethod
    def look_at(
        cls,
        eye: np.ndarray,
        target: np.ndarray,
        up: np.ndarray,
        fov_y_deg: float,
        width: int,
        height: int,
    ) -> Camera:
        """A camera at `eye` looking at `target`, `up` pointing up on screen; square pixels."""
        eye = np.asarray(eye, dtype=np.float64)  # [3]
        forward = np.asarray(target, dtype=np.float64) - eye  # [3]
        norm = np.linalg.norm(forward)
        if norm == 0:
            raise ValueError("look_at: eye and target coincide")
        forward /= norm
        right = np.cross(forward, np.asarray(up, dtype=np.float64))  # [3]
        if np.linalg.norm(right) < 1e-12:
            raise ValueError("look_at: up is parallel to the viewing direction")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)  # [3]
        view = np.eye(4)  # [4, 4]
        view[:3, :3] = np.stack([right, down, forward])
        view[:3, 3] = -view[:3, :3] @ eye
        if not 0 < fov_y_deg < 180:
            raise ValueError(f"look_at: fov_y_deg must be in (0, 180), got {fov_y_deg}")
        focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        return cls(view, focal, focal, width / 2, height / 2, width, height)

    def scaled(self, scale: float) -> Camera:
        """The same view on an image ``scale`` times the size (at least 1x1): the intrinsics follow the pixels."""
        width, height = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                                   width=width, height=height)

    def with_view(self, view: np.ndarray) -> Camera:
        """The same intrinsics seen from another view matrix [4, 4]."""
        return dataclasses.replace(self, view=view)
