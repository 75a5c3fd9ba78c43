"""Rendering of 3D Gaussian splats: cameras, the differentiable `rasterize` API and its backends."""

from __future__ import annotations

from core.render.api import BACKENDS, RenderOutput, available_backends, rasterize
from core.render.camera import Camera

__all__ = ["BACKENDS", "Camera", "RenderOutput", "available_backends", "rasterize"]
