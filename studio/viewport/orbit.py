"""Orbit camera for the viewport: yaw/pitch about a target, distance, pan in the view plane.

Coordinates follow the renderer (OpenCV: x right, y down, z forward); the world's up is -y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from core.render.camera import Camera

WORLD_UP = np.array([0.0, -1.0, 0.0])


@dataclass(frozen=True)
class Orbit:
    target: tuple[float, float, float]
    distance: float
    yaw: float = 0.0     # degrees about the world's up, 0 = looking along +z
    pitch: float = 0.0   # degrees, positive looks down on the target
    fov_y: float = 30.0  # degrees

    @classmethod
    def framing(cls, centre: np.ndarray, radius: float, fov_y: float = 30.0) -> "Orbit":
        """An orbit that looks along +z at a sphere of ``radius`` about ``centre`` and fits it in view."""
        distance = max(radius, 1e-6) / math.sin(math.radians(fov_y) / 2) * 1.1
        return cls(tuple(float(c) for c in centre), distance, fov_y=fov_y)

    def eye(self) -> np.ndarray:
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        # Direction from the eye to the target: +z at yaw = pitch = 0; pitch > 0 raises the eye (-y).
        forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        return np.asarray(self.target) - self.distance * forward

    def camera(self, width: int, height: int) -> Camera:
        return Camera.look_at(self.eye(), np.asarray(self.target), WORLD_UP, self.fov_y, width, height)

    def rotated(self, d_yaw: float, d_pitch: float) -> "Orbit":
        return replace(self, yaw=(self.yaw + d_yaw) % 360.0, pitch=float(np.clip(self.pitch + d_pitch, -89.0, 89.0)))

    def zoomed(self, factor: float) -> "Orbit":
        return replace(self, distance=max(self.distance * factor, 1e-4))

    def panned(self, dx_px: float, dy_px: float, height: int) -> "Orbit":
        """Move the target with the mouse: ``dx_px, dy_px`` screen pixels at the target's depth."""
        cam = self.camera(height, height)
        world_per_px = 2 * self.distance * math.tan(math.radians(self.fov_y) / 2) / max(height, 1)
        rot = cam.view[:3, :3]  # world -> camera; its rows are the camera axes in world coordinates
        shift = (-dx_px * rot[0] - dy_px * rot[1]) * world_per_px
        return replace(self, target=tuple(float(v) for v in np.asarray(self.target) + shift))
