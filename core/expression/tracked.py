"""The footage's tracked face as animation: its ARKit blendshapes and stabilized head rotation per frame, as a
Live Link Face CSV that Unreal, Maya or Blender put on any ARKit rig. A pipeline stage (``tracked_csv``)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from core.config import to_dict
from core.expression.arkit_csv import ArkitTake, from_mediapipe, head_angles, read_csv, write_csv
from core.jobs import CancelToken, Progress, ProgressFn
from core.layout import TRACKED_CSV_FILE
from core.options import option
from core.pipeline import begin
from core.project import Project, writes_project
from core.tracking.track import load_tracking

STAGE = "tracked_csv"


@dataclass(frozen=True)
class TrackedCsvConfig:
    head: bool = option(True, "leave the head's rotation out: blendshapes only")


@dataclass
class TrackedCsvJob:
    project: Project
    config: TrackedCsvConfig = TrackedCsvConfig()
    name: str = "Export tracked blendshapes"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> ArkitTake:
        run = begin(self.project, STAGE, to_dict(self.config))
        if run.up_to_date:
            progress(Progress(1.0, "The tracked blendshapes' CSV is up to date"))
            return load_tracked_csv(self.project)
        tracking = load_tracking(self.project)
        cancel.check(self.name)
        head = head_angles(tracking["rot"]) if self.config.head else None  # [T,3] yaw, pitch, roll
        write_csv(self.project.path(TRACKED_CSV_FILE), from_mediapipe(tracking["blendshapes"]),
                  Fraction(run.footage.info["fps"]), head)
        run.record([TRACKED_CSV_FILE])
        progress(Progress(1.0, f"Wrote {len(tracking['blendshapes'])} frames to {TRACKED_CSV_FILE}"))
        return load_tracked_csv(self.project)


def load_tracked_csv(project: Project) -> ArkitTake:
    return read_csv(project.path(TRACKED_CSV_FILE))
