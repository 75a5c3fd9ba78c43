"""Expression editing latency: from a slider moving to the Viewer painting the avatar in context under the new value.

Run by hand on a May project with a trained avatar::

    python benchmarks/train.py --clips may_13s --keep DIR     # makes DIR/may_13s (cpu-draft, 256² crops)
    python benchmarks/expression.py --project DIR/may_13s

The studio's window opens a copy of the project under Xvfb: the Viewer in Avatar in Context, the Viewport open
beside it in Avatar mode (it recomputes the avatar's Gaussians for every edit too, on its own thread), the
Expression panel floating. browInnerUp's slider is set to 40 values in turn at one frame; a latency runs from
``setValue`` to the Viewer's paint of the composite made under that value. At the avatar's 256² crops and at
512² (the same Gaussians rendered at 512² crops: a copy of the avatar whose config says 512), idle and beside one
other CPU-bound process, with torch on 1 thread (the studio's setting, ``studio.app.TORCH_THREADS``) and on 2. Baseline, same run: ``Driver.frame`` of that frame called directly (render and composite,
no window, no worker), median of 20. Target: median <= 150 ms at 256², idle.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.features import load_features  # noqa: E402
from core.avatar.drive import Driver  # noqa: E402
from core.layout import AVATAR_FILE  # noqa: E402
from core.media import FrameReader  # noqa: E402
from core.project import Project  # noqa: E402

FRAME = 140
SAMPLES = 40


def busy() -> None:
    while True:
        pass


def at_crop(src: Path, crop: int, folder: Path) -> Path:
    """A copy of the project whose avatar renders at ``crop``² (its Gaussians unchanged)."""
    root = folder / f"crop{crop}"
    shutil.copytree(src, root)
    saved = torch.load(root / AVATAR_FILE, weights_only=True)
    config = json.loads(saved["config"])
    if config["crop_size"] != crop:
        config["crop_size"] = crop
        saved["config"] = json.dumps(config)
        torch.save(saved, root / AVATAR_FILE)
    return root


def direct_ms(root: Path) -> float:
    """Median ms of Driver.frame for FRAME: the render and the composite alone."""
    project = Project.open(root)
    driver = Driver.load(project)
    features = np.ascontiguousarray(load_features(project).features, np.float32)
    with FrameReader(project.checked_footage().path) as reader:
        frame = reader.read(FRAME)
    lip = driver.lip(driver.model.audio_window(features, FRAME))
    expr = driver.views.expr[FRAME].copy()
    times = []
    for i in range(21):
        expr[2] = (i % 10) / 10
        t = time.perf_counter()
        driver.frame(frame, FRAME, lip, expr)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times[1:])


def slider_latencies(app, root: Path) -> list[float]:
    """ms from each slider move to the paint of its composite, in the studio's window."""
    from PySide6.QtCore import QSettings

    from studio.main_window import MainWindow

    settings = QSettings(str(root.parent / f"{root.name}.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.show()

    def pump_until(ready, timeout: float = 60.0) -> None:
        end = time.perf_counter() + timeout
        while not ready():
            app.processEvents()
            if time.perf_counter() > end:
                raise TimeoutError("the studio did not answer")
            time.sleep(0.001)

    window.open_project(root)
    pump_until(lambda: window.state.footage is not None and window.job is None
               and window.state.edits.project is not None)
    window.docks["viewport"].show()
    window.docks["viewport"].raise_()
    window.docks["expression"].setFloating(True)
    window.state.set_frame(FRAME)
    window.viewer.set_mode("avatar")
    viewer, edits = window.viewer, window.state.edits
    painted: list[float] = []
    real_paint = viewer.paintEvent

    def paint(event) -> None:
        real_paint(event)
        if viewer.composite is not None and viewer.composite.edits == edits.edits:
            painted.append(time.perf_counter())

    viewer.paintEvent = paint
    pump_until(lambda: viewer.composite is not None)
    slider = window.panels["expression"].rows["browInnerUp"].slider
    out = []
    for i in range(SAMPLES + 1):
        painted.clear()
        t = time.perf_counter()
        slider.setValue(100 + 800 * (i % 2) + i)  # a new value every time
        pump_until(lambda: bool(painted))
        out.append(1000 * (painted[0] - t))
    window.close()
    return out[1:]  # the first includes loading the avatar for the Viewport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="a project with a trained avatar (may_13s)")
    args = parser.parse_args()

    from pyvirtualdisplay import Display
    from PySide6.QtWidgets import QApplication

    from studio.app import configure_app

    display = Display(visible=False, size=(1600, 1000))
    display.start()
    app = QApplication(["bench", "-platform", "xcb"])
    configure_app(app)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for crop in (256, 512):
            root = at_crop(args.project, crop, Path(tmp))
            for threads in (1, 2):
                for load in ("idle", "1 busy process"):
                    other = multiprocessing.Process(target=busy, daemon=True) if load != "idle" else None
                    if other is not None:
                        other.start()
                        time.sleep(1.0)  # started and spinning before anything is timed
                    try:
                        torch.set_num_threads(threads)
                        base = direct_ms(root)
                        lat = slider_latencies(app, root)
                    finally:
                        if other is not None:
                            other.terminate()
                    rows.append((crop, threads, load, base, statistics.median(lat), float(np.percentile(lat, 95))))
                    print(f"  {crop}², {threads} threads, {load}: done", file=sys.stderr)
    print(f"Slider to painted composite, frame {FRAME}, {SAMPLES} moves")
    print("| crop | torch threads | load | direct render + composite, median ms | slider to screen, median ms "
          "| p95 ms |")
    print("|---|---|---|---|---|---|")
    for crop, threads, load, base, med, p95 in rows:
        print(f"| {crop}² | {threads} | {load} | {base:.0f} | {med:.0f} | {p95:.0f} |")
    sys.stdout.flush()
    display.stop()


if __name__ == "__main__":
    main()
