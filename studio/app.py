"""Avatar Studio's entry point: the QApplication, its settings identity, theme and main window."""

from __future__ import annotations

import signal
import sys
from importlib import resources

import torch
from PySide6.QtCore import QCoreApplication, QSettings, QTimer
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from core.memory import hold_mmap_threshold

ORG, APP = "Avatar Studio", "Avatar Studio"


# Jobs run Python in worker threads. With CPython's default 5 ms GIL switch interval, a paint that crosses
# between Qt and Python many times (pyqtgraph) waits up to 5 ms at each crossing while a worker computes;
# 1 ms keeps the UI thread's waits short at a negligible cost to the workers.
GIL_SWITCH_INTERVAL_S = 0.001
# The studio runs torch on threads of its own at once (a job, the Viewer's composites, the Viewport's Gaussians).
# torch's intra-op pool on top of them oversubscribes the cores, and its spinning threads then wait on each other
# many times longer than the work takes: each of the studio's threads runs torch on one (benchmarks/expression.py).
TORCH_THREADS = 1


def configure_app(app: QApplication) -> None:
    """Names for QSettings, the Fusion style with a dark palette, the stylesheet and icon; the GIL interval and
    torch's threads."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    torch.set_num_threads(TORCH_THREADS)
    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(APP)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    app.setStyle("Fusion")
    pal = QPalette()
    for role, rgb in ((QPalette.ColorRole.Window, (37, 37, 42)), (QPalette.ColorRole.WindowText, (220, 220, 225)),
                      (QPalette.ColorRole.Base, (28, 28, 32)), (QPalette.ColorRole.AlternateBase, (44, 44, 50)),
                      (QPalette.ColorRole.Text, (220, 220, 225)), (QPalette.ColorRole.Button, (48, 48, 54)),
                      (QPalette.ColorRole.ButtonText, (220, 220, 225)), (QPalette.ColorRole.Highlight, (60, 130, 210)),
                      (QPalette.ColorRole.HighlightedText, (255, 255, 255)), (QPalette.ColorRole.ToolTipBase, (50, 50, 56)),
                      (QPalette.ColorRole.ToolTipText, (230, 230, 235)), (QPalette.ColorRole.PlaceholderText, (130, 130, 140))):
        pal.setColor(role, QColor(*rgb))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 110, 118))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(110, 110, 118))
    app.setPalette(pal)
    styles = resources.files("resources") / "styles"
    app.setStyleSheet((styles / "studio.qss").read_text(encoding="utf-8"))
    with resources.as_file(resources.files("resources") / "icons" / "app.svg") as icon:
        app.setWindowIcon(QIcon(str(icon)))


def main(argv: list[str] | None = None) -> int:
    """``avatar-studio [PROJECT_DIR | project.json | SPLATS.ply]``"""
    argv = sys.argv if argv is None else argv
    hold_mmap_threshold()  # playback and dubs hold memory flat over long footage
    from studio.viewport.widget import configure_gl_format

    configure_gl_format()  # before the QApplication: GL widgets take the default format then
    app = QApplication.instance() or QApplication(argv)
    configure_app(app)
    from studio.main_window import MainWindow  # after the app exists: widgets need it

    window = MainWindow()
    # SIGTERM (a session logging out) and Ctrl-C close the window as the user would: the running job is cancelled
    # (a training run keeps its checkpoint) and the project saved. The timer lets Python run signal handlers
    # while Qt's loop waits.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: window.close())
    heartbeat = QTimer(window)
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(250)
    # A bug in a slot becomes a message and a log entry, never a traceback on a terminal nobody reads.
    sys.excepthook = lambda kind, error, tb: window.report_unexpected(error.with_traceback(tb), "the studio")
    window.show()
    if len(argv) > 1:
        window.open_path(argv[1])
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
