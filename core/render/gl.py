"""The GL preview renderer: the contract's EWA splatting with moderngl, for display (no Qt here).

Static per-Gaussian data (mean, opacity, Σ3d, SH) lives in one float texture uploaded by ``set_splats``.
When the view changes, numpy sorts the Gaussians back to front and a transform-feedback pass projects
them in that order (2D conic, SH colour, covering ellipse), one vertex each, into a texture. The draw
pass covers each Gaussian with one triangle around the ellipse where its alpha can reach 1/255; the
fragment shader evaluates the Gaussian at the pixel centre and writes premultiplied colour, blended
"over" what lies behind it. Mesa's software GL (llvmpipe) shaped this: it shades vertices on one
thread and pays per primitive, so one projection per Gaussian (not one per quad corner), a plain
glDrawArrays (llvmpipe shades instanced draws one 4-vertex instance at a time) and one triangle rather than
a quad (more pixels, half the primitives: faster on llvmpipe; benchmarks/render.py).
Unlike the CPU rasterizer there is no early stop at transmittance 1e-4: that changes a pixel by at most
T·|colour - background| with T < 1e-4 / (1 - alpha), i.e. below 1/255 for alphas up to 0.96.
While a scene plays, ``PlaybackScale`` picks the share of the resolution whose draw fits a frame's budget (what
software GL pays for is pixels shaded), and ``render`` stretches that smaller image to the viewport, as 3D tools
lower the viewport's resolution during playback; a still scene is drawn at full resolution.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, TypeVar

import moderngl
import numpy as np

from core.render.camera import Camera
from core.render.splats import Splats

T = TypeVar("T")
NEAR = 0.01
TEXTURE_WIDTH = 4096  # texels per row of the data texture; splat.vert's fetch() assumes it
# a scaled draw stretched over the viewport: one triangle covering it, the image read bilinearly
STRETCH_VERT = """#version 330 core
out vec2 uv;
void main() {
    vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2);
    uv = p;
    gl_Position = vec4(2.0 * p - 1.0, 0.0, 1.0);
}
"""
STRETCH_FRAG = """#version 330 core
uniform sampler2D image;
in vec2 uv;
out vec4 frag_color;
void main() { frag_color = vec4(texture(image, uv).rgb, 1.0); }
"""


def headless_context() -> moderngl.Context:
    """A standalone OpenGL context without a window (EGL: works without a display). In a process that also
    shows Qt GL widgets, use it through HeadlessGL, off the GUI thread."""
    return moderngl.create_standalone_context(backend="egl")


class HeadlessGL:
    """An EGL context that lives on a thread of its own; ``call(fn, ...)`` runs GL work there.

    Offscreen rendering (exports, tests) then never touches the calling thread's GL state: once an EGL
    context has been current on Qt's GUI thread, Qt's GLX contexts there fail to become current.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headless-gl")
        try:
            self.ctx = self.call(headless_context)
        except BaseException:
            self._pool.shutdown()
            raise

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self.call(self.ctx.release)
        self._pool.shutdown()


def _shader(name: str) -> str:
    return (resources.files("resources") / "shaders" / name).read_text(encoding="utf-8")


def _packed(splats: Splats) -> np.ndarray:
    """Per-Gaussian texels [N, 3 + K, 4]: (mean, opacity), (c00 c01 c02 c11), (c12 c22 0 0), SH rgb0..."""
    n, k = len(splats), splats.sh.shape[1]
    q = splats.quats.astype(np.float64)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1).reshape(n, 3, 3)
    m = rot * np.exp(splats.log_scales.astype(np.float64))[:, None, :]  # R S [N,3,3]
    cov = m @ m.transpose(0, 2, 1)  # [N,3,3]
    texels = np.zeros((n, 3 + k, 4), np.float32)
    texels[:, 0, :3] = splats.means
    texels[:, 0, 3] = 1 / (1 + np.exp(-splats.opacity_logits.astype(np.float64)))
    texels[:, 1] = cov[:, [0, 0, 0, 1], [0, 1, 2, 1]]
    texels[:, 2, :2] = cov[:, [1, 2], [2, 2]]
    texels[:, 3:, :3] = splats.sh
    return texels


class GLSplatRenderer:
    """Draws Splats into a framebuffer of the given context; cheap to call every frame."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.project = ctx.program(vertex_shader=_shader("splat_project.vert"),
                                   varyings=["ellipse", "conic_ratio", "color_op"])
        self.program = ctx.program(vertex_shader=_shader("splat.vert"), fragment_shader=_shader("splat.frag"))
        self._means = np.zeros((0, 3), np.float32)  # [N,3] for the depth sort
        self._texture: moderngl.Texture | None = None
        self._order: moderngl.Buffer | None = None  # [N] uint32 back-to-front indices
        self._projected: moderngl.Buffer | None = None  # [rows*4096, 4] float32: pass 1's output...
        self._projected_tex: moderngl.Texture | None = None  # ...copied here for pass 2
        self._project_vao: moderngl.VertexArray | None = None
        self._vao: moderngl.VertexArray | None = None
        self._count = 0  # Gaussians in the current order (those in front of the near plane)
        self._projected_for: Camera | None = None  # the camera pass 1 last ran for
        self._offscreen: moderngl.Framebuffer | None = None
        self._scaled: moderngl.Framebuffer | None = None  # the smaller image of a scaled draw
        self._stretch = ctx.program(vertex_shader=STRETCH_VERT, fragment_shader=STRETCH_FRAG)
        self._stretch_vao = ctx.vertex_array(self._stretch, [])

    def set_splats(self, splats: Splats) -> None:
        """Upload ``splats`` (replacing any previous ones)."""
        self._release_scene()
        self._means = splats.means
        n = len(splats)
        if n == 0:
            return
        self._texture = self._data_texture(_packed(splats).reshape(-1, 4))
        self._order = self.ctx.buffer(reserve=4 * n, dynamic=True)
        self._projected_tex = self._data_texture(np.zeros((3 * n, 4), np.float32))
        self._projected = self.ctx.buffer(reserve=16 * self._projected_tex.width * self._projected_tex.height)
        self._project_vao = self.ctx.vertex_array(self.project, [(self._order, "1u", "splat_index")])
        self._vao = self.ctx.vertex_array(self.program, [])
        self.project["sh_coeffs"] = splats.sh.shape[1]
        self.project["splat_data"] = 0
        self.program["projected"] = 1

    def render(self, camera: Camera, background: tuple[float, float, float] = (0.0, 0.0, 0.0),
               fbo: moderngl.Framebuffer | None = None, scale: float = 1.0) -> None:
        """Draw into ``fbo`` (default: the context's bound framebuffer) over a ``background`` clear.

        Sets the blend, depth, cull and viewport state it needs (the caller's context may hold anything);
        the image covers the viewport (0, 0, camera.width, camera.height) in device pixels; the frame
        is left opaque (alpha 1). Sorting and projection rerun only when ``camera`` changed. ``scale`` < 1:
        drawn at that share of the width and height, then stretched over the viewport (bilinear).
        """
        fbo = fbo if fbo is not None else self.ctx.detect_framebuffer()
        small = camera.scaled(scale) if scale < 1.0 else camera
        if small.width == camera.width and small.height == camera.height:
            self._draw(camera, background, fbo)
            return
        if self._scaled is None or self._scaled.size != (small.width, small.height):
            self._release_scaled()
            texture = self.ctx.texture((small.width, small.height), 4)
            texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self._scaled = self.ctx.framebuffer([texture])
        self._draw(small, background, self._scaled)
        fbo.use()
        self.ctx.viewport = (0, 0, camera.width, camera.height)
        self.ctx.disable(moderngl.BLEND)
        self._scaled.color_attachments[0].use(2)
        self._stretch["image"] = 2
        self._stretch_vao.render(moderngl.TRIANGLES, vertices=3)

    def _draw(self, camera: Camera, background: tuple[float, float, float], fbo: moderngl.Framebuffer) -> None:
        fbo.use()
        self.ctx.viewport = (0, 0, camera.width, camera.height)
        self.ctx.scissor = None
        fbo.clear(*(float(c) for c in background), 1.0)
        if self._vao is None:
            return
        if camera != self._projected_for:
            self._sort_and_project(camera)
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE | moderngl.RASTERIZER_DISCARD)
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_equation = moderngl.FUNC_ADD
        self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA  # premultiplied "over"
        self.program["image_size"] = (float(camera.width), float(camera.height))
        self._projected_tex.use(1)
        self._vao.render(moderngl.TRIANGLES, vertices=3 * self._count)

    def render_image(self, camera: Camera, background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                     scale: float = 1.0) -> np.ndarray:
        """Render offscreen (``render``'s ``scale``) and read back: uint8 [H,W,3], rows top-down.

        The target is float32, so hundreds of blends do not each round to 8 bits (a window's frame does).
        """
        size = (camera.width, camera.height)
        if self._offscreen is None or self._offscreen.size != size:
            if self._offscreen is not None:
                self._offscreen.color_attachments[0].release()
                self._offscreen.release()
            self._offscreen = self.ctx.framebuffer([self.ctx.renderbuffer(size, 4, dtype="f4")])
        self.render(camera, background, self._offscreen, scale)
        rgb = np.frombuffer(self._offscreen.read(components=3, dtype="f1"), np.uint8)  # GL clamps and rounds
        return rgb.reshape(camera.height, camera.width, 3)[::-1].copy()  # GL rows are bottom-up

    def release(self) -> None:
        """Free the GL objects (call with the context current, e.g. when the widget closes)."""
        self._release_scene()
        self._release_scaled()
        if self._offscreen is not None:
            self._offscreen.color_attachments[0].release()
            self._offscreen.release()
            self._offscreen = None
        self._stretch_vao.release()
        self._stretch.release()
        self.program.release()
        self.project.release()

    def _release_scaled(self) -> None:
        if self._scaled is not None:
            self._scaled.color_attachments[0].release()
            self._scaled.release()
            self._scaled = None

    def _sort_and_project(self, camera: Camera) -> None:
        """Sort the Gaussians in front of the near plane back to front, then run pass 1 in that order."""
        view = camera.view  # [4,4] float64
        z = self._means @ view[2, :3] + view[2, 3]  # [N] camera-space depth
        keep = np.flatnonzero(z >= NEAR)
        order = keep[np.argsort(-z[keep])].astype(np.uint32)  # [M]
        self._order.write(order.tobytes())
        self._count = len(order)
        self.project["view"].write(view.T.astype(np.float32).tobytes())  # GLSL matrices are column-major
        self.project["cam_centre"] = tuple(float(c) for c in camera.centre)
        self.project["focal"] = (camera.fx, camera.fy)
        self.project["principal"] = (camera.cx, camera.cy)
        self.project["image_size"] = (float(camera.width), float(camera.height))
        self._texture.use(0)
        self._project_vao.transform(self._projected, moderngl.POINTS, vertices=self._count)
        self._projected_tex.write(self._projected)  # a copy inside GL
        self._projected_for = camera

    def _data_texture(self, texels: np.ndarray) -> moderngl.Texture:
        """An RGBA float texture TEXTURE_WIDTH wide holding ``texels`` [M,4] row by row (zero padded)."""
        rows = max(-(-len(texels) // TEXTURE_WIDTH), 1)
        data = np.zeros((rows * TEXTURE_WIDTH, 4), np.float32)
        data[: len(texels)] = texels
        texture = self.ctx.texture((TEXTURE_WIDTH, rows), 4, data.tobytes(), dtype="f4")
        texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        return texture

    def _release_scene(self) -> None:
        for obj in (self._vao, self._project_vao, self._projected, self._projected_tex, self._order, self._texture):
            if obj is not None:
                obj.release()
        self._vao = self._project_vao = self._projected = self._projected_tex = None
        self._order = self._texture = None
        self._count = 0
        self._projected_for = None


@dataclass
class PlaybackScale:
    """The share of the viewport's width and height a playing scene is drawn at: the largest whose draw fits
    ``budget_s``, from the draws measured so far (a draw's time taken as proportional to its pixels, smoothed over
    the last few), between ``lowest`` and 1. Feed it each playing frame's draw time (``measured``)."""

    budget_s: float = 0.025
    lowest: float = 0.5
    scale: float = 1.0
    full_s: float | None = None   # a full-resolution draw's estimated seconds

    def measured(self, seconds: float, scale: float) -> float:
        """Take a draw of ``seconds`` at ``scale``; the scale for the next one."""
        full = seconds / (scale * scale)
        self.full_s = full if self.full_s is None else 0.7 * self.full_s + 0.3 * full
        self.scale = float(np.clip(np.sqrt(self.budget_s / max(self.full_s, 1e-9)), self.lowest, 1.0))
        return self.scale
