"""SplatViewport: a QOpenGLWidget that draws Splats with core.render.gl, with orbit (left drag), pan
(middle drag or Shift+left), zoom (wheel), reset to the source camera (F), and a frames/s readout. While frames of
an animated scene arrive it draws them at the resolution that keeps up (core.render.gl.PlaybackScale); once they
stop, the last one is drawn again at full resolution."""

from __future__ import annotations

import time
from collections import deque

import moderngl
import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QMouseEvent, QSurfaceFormat, QWheelEvent
from PySide6.QtOpenGLWidgets import QOpenGLWidget

from core.render.gl import GLSplatRenderer, PlaybackScale
from core.render.splats import Splats
from studio.viewport.orbit import Orbit

BACKGROUND = (0.09, 0.09, 0.11)
DEGREES_PER_PIXEL = 0.4
SETTLE_MS = 300   # no new frame for this long: the scene is still, drawn at full resolution


def configure_gl_format() -> None:
    """OpenGL 3.3 core for every GL widget: what moderngl needs. Call before the QApplication exists."""
    fmt = QSurfaceFormat()
    fmt.setVersion(3, 3)
    fmt.setProfile(QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    fmt.setDepthBufferSize(24)
    QSurfaceFormat.setDefaultFormat(fmt)


def framing(splats: Splats) -> Orbit:
    """An orbit that frames the bulk of the splats (robust to a few strays)."""
    means = splats.means.astype(np.float64)  # [N,3]
    centre = np.median(means, axis=0)
    radius = float(np.percentile(np.linalg.norm(means - centre, axis=1), 95)) if len(means) else 1.0
    return Orbit.framing(centre, radius)


class SplatViewport(QOpenGLWidget):
    fps_changed = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.ctx: moderngl.Context | None = None
        self.renderer: GLSplatRenderer | None = None
        self.splats: Splats | None = None
        self.orbit = Orbit((0.0, 0.0, 0.0), 3.0)
        self.source = self.orbit  # what Reset returns to
        self._pending: Splats | None = None  # uploaded at the next paint, when the context is current
        self._drag: tuple[QPointF, Qt.MouseButton, Qt.KeyboardModifier] | None = None
        self._frame_times: deque[float] = deque(maxlen=30)
        self._last_fps_emit = 0.0
        self.playback = PlaybackScale()
        self.drawn_scale = 1.0          # the share of the resolution the last frame was drawn at
        self._playing = False
        self._settle = QTimer(self, singleShot=True, interval=SETTLE_MS, timeout=self._still)
        self.setMinimumSize(240, 180)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)

    # --- scene ------------------------------------------------------------------------------------
    def set_splats(self, splats: Splats | None, source: Orbit | None = None, keep_view: bool = False) -> None:
        """Show ``splats`` (None: nothing); ``source`` is the camera Reset returns to (default: a framing of the
        splats). ``keep_view`` leaves both cameras as they are: the next frame of an animated scene."""
        self.splats = splats
        self._pending = splats
        if splats is not None and not keep_view:
            self.source = source or framing(splats)
            self.orbit = self.source
        self._playing = keep_view
        if keep_view:
            self._settle.start()
        self.update()

    def _still(self) -> None:
        self._playing = False
        self.update()

    def reset_view(self) -> None:
        self.orbit = self.source
        self.update()

    def set_orbit(self, orbit: Orbit) -> None:
        self.orbit = orbit
        self.update()

    def fps(self) -> float:
        """Frames per second over the last frames drawn."""
        if len(self._frame_times) < 2:
            return 0.0
        return (len(self._frame_times) - 1) / max(self._frame_times[-1] - self._frame_times[0], 1e-9)

    # --- GL ----------------------------------------------------------------------------------------
    def initializeGL(self) -> None:  # noqa: N802 - Qt API
        self.ctx = moderngl.create_context()
        self.renderer = GLSplatRenderer(self.ctx)
        if self.splats is not None:
            self._pending = self.splats

    def paintGL(self) -> None:  # noqa: N802 - Qt API
        if self.ctx is None or self.renderer is None:
            return
        fbo = self.ctx.detect_framebuffer(self.defaultFramebufferObject())
        if self._pending is not None:
            self.renderer.set_splats(self._pending)
            self._pending = None
        if self.splats is None:
            fbo.clear(*BACKGROUND, 1.0)
            return
        ratio = self.devicePixelRatio()
        w, h = max(1, int(self.width() * ratio)), max(1, int(self.height() * ratio))
        self.drawn_scale = self.playback.scale if self._playing else 1.0
        begun = time.perf_counter()
        self.renderer.render(self.orbit.camera(w, h), BACKGROUND, fbo=fbo, scale=self.drawn_scale)
        if self._playing:
            self.ctx.finish()
            self.playback.measured(time.perf_counter() - begun, self.drawn_scale)
        self._frame_times.append(time.perf_counter())
        now = time.monotonic()
        if now - self._last_fps_emit > 0.5:
            self._last_fps_emit = now
            self.fps_changed.emit(self.fps())

    # --- mouse ------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self._drag = (event.position(), event.button(), event.modifiers())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._drag is None:
            return
        start, button, mods = self._drag
        d = event.position() - start
        self._drag = (event.position(), button, mods)
        pan = button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ShiftModifier)
        if pan:
            self.orbit = self.orbit.panned(d.x(), d.y(), self.height())
        elif button == Qt.MouseButton.LeftButton:
            self.orbit = self.orbit.rotated(-d.x() * DEGREES_PER_PIXEL, d.y() * DEGREES_PER_PIXEL)
        self.update()

    def mouseReleaseEvent(self, _event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self._drag = None

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        self.orbit = self.orbit.zoomed(0.9 ** (event.angleDelta().y() / 120))
        self.update()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_F:
            self.reset_view()
        else:
            super().keyPressEvent(event)
