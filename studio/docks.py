"""The studio's panels, registered once: each becomes a dock with its title, made from the session state alone,
placed in an area of the window (tabbed beside another panel, or sized on first run). A new panel is its own
module plus one line here; the window builds docks, the View menu and Reset Layout from this list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from studio.panels.audio import AudioPanel
from studio.panels.curves import CurvesPanel
from studio.panels.expression import ExpressionPanel
from studio.panels.live import LivePanel
from studio.panels.pose_curves import PoseCurvesPanel
from studio.panels.project import ProjectPanel
from studio.panels.timeline import TimelinePanel
from studio.panels.torso import TorsoPanel
from studio.panels.tracking import TrackingPanel
from studio.panels.training import TrainingPanel
from studio.panels.viewport import ViewportPanel
from studio.state import StudioState

Area = Qt.DockWidgetArea


@dataclass(frozen=True)
class PanelSpec:
    key: str                                # the dock's name in saved layouts and in ``MainWindow.panels``
    title: str
    make: Callable[[StudioState], QWidget]  # the panel's class
    area: Area
    tab_with: str | None = None             # shown as a tab beside this panel (its key)
    size: int | None = None                 # first-run size across its area, in pixels


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("project", "Project", ProjectPanel, Area.LeftDockWidgetArea, size=300),
    PanelSpec("tracking", "Tracking", TrackingPanel, Area.LeftDockWidgetArea),
    PanelSpec("timeline", "Timeline", TimelinePanel, Area.BottomDockWidgetArea, size=220),
    PanelSpec("pose", "Pose Curves", PoseCurvesPanel, Area.RightDockWidgetArea, size=520),
    PanelSpec("viewport", "Viewport", ViewportPanel, Area.RightDockWidgetArea, tab_with="pose"),
    PanelSpec("expression", "Expression", ExpressionPanel, Area.RightDockWidgetArea, tab_with="pose"),
    PanelSpec("curves", "Curves", CurvesPanel, Area.RightDockWidgetArea, tab_with="pose"),
    PanelSpec("audio", "Audio", AudioPanel, Area.RightDockWidgetArea, tab_with="pose"),
    PanelSpec("training", "Training", TrainingPanel, Area.RightDockWidgetArea, tab_with="pose"),
    PanelSpec("torso", "Torso", TorsoPanel, Area.RightDockWidgetArea, tab_with="pose"),
    PanelSpec("live", "Live", LivePanel, Area.RightDockWidgetArea, tab_with="pose"),
)
