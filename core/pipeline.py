"""The pipeline's stages declared once, and whether each result in a project is still current.

Every stage's record (core.project.StageRecord) names what it was made from: the footage's content hash and the
creation stamps of the upstream results it read. A result is *current* when those still match the project, *stale*
(with a reason a person can act on) when the footage or an upstream result changed since, *missing* when it was
never made. Consumers (evaluation, dubbing, the studio's viewport) ask ``require_current`` before reading a result,
so a re-import or a changed encoder ends in a message, never in a wrong video or a tensor error.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ProjectError
from core.layout import (AVATAR_FILE, FEATURES_FILE, KEYPOINTS_FILE, LANDMARKS_FILE, TORSO_FILE, TRACKED_CSV_FILE,
                         TRACKING_FILE)
from core.project import FootageRef, Project


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline. Its job, config and loader are named as "module:attribute" and imported when
    used, so the registry sits below the stages it lists (they ask it whether their inputs are current)."""

    name: str                       # the key of its record in project.json
    label: str                      # what it made, for messages
    upstream: tuple[str, ...]       # the stages whose results it reads
    files: tuple[str, ...]          # what it writes into the project (core.layout)
    job: str                        # Job(project, config) makes the result
    config: str                     # the job's config dataclass
    load: str                       # load(project) reads the result
    command: str                    # the CLI command that runs it
    help: str                       # what the command does, for the CLI
    verb: str                       # what a person does to make it ("track", "train")
    plural: bool = False            # whether its label takes "were"

    @property
    def was(self) -> str:
        return f"{self.label} {'were' if self.plural else 'was'}"

    @property
    def unmade(self) -> str:
        return f"{self.label} {'have' if self.plural else 'has'} not been made"

    @property
    def redo(self) -> str:
        return f"{self.verb} again (avatar-studio-cli {self.command})"

    @property
    def todo(self) -> str:
        return f"{self.verb} first (avatar-studio-cli {self.command})"

    def resolve(self, what: str) -> Any:
        """The stage's ``job``, ``config`` or ``load``, imported."""
        module, _, attrs = getattr(self, what).partition(":")
        return functools.reduce(getattr, attrs.split("."), importlib.import_module(module))


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("tracking", "the tracking", (), (TRACKING_FILE, LANDMARKS_FILE, KEYPOINTS_FILE), "core.tracking.track:TrackJob",
          "core.tracking.track:TrackConfig", "core.tracking.track:load_tracking", "track",
          "track the face: landmarks, blendshapes, head pose (stabilized)", "track the face"),
    Stage("audio", "the audio features", ("tracking",), (FEATURES_FILE,), "core.audio.features:AudioFeaturesJob",
          "core.audio.features:AudioConfig", "core.audio.features:load_features", "audio",
          "audio features per frame", "make the audio features", plural=True),
    Stage("avatar", "the avatar", ("tracking", "audio"), (AVATAR_FILE,),
          "core.avatar.train:TrainAvatarJob", "core.avatar.config:TrainConfig", "core.avatar.drive:Driver.load",
          "train", "train the avatar", "train"),
    Stage("torso", "the torso restorer", ("tracking",), (TORSO_FILE,), "core.avatar.torso:TorsoJob",
          "core.avatar.torso:TorsoConfig", "core.avatar.torso:load_torso", "train-torso",
          "train the Torso Restorer: it rebuilds the chin and neck band where the rendered jaw and the footage's "
          "differ", "train the torso restorer"),
    Stage("tracked_csv", "the tracked blendshapes' CSV", ("tracking",), (TRACKED_CSV_FILE,),
          "core.expression.tracked:TrackedCsvJob", "core.expression.tracked:TrackedCsvConfig",
          "core.expression.tracked:load_tracked_csv", "export-tracked",
          "the tracked face as animation: ARKit blendshapes and head rotation as a Live Link Face CSV",
          "export the tracked blendshapes"),
)}


@dataclass(frozen=True)
class Run:
    """A stage about to run: what its result will record, and whether the project already holds that result."""

    project: Project
    stage: str
    footage: FootageRef             # the project's footage, checked: there and unchanged
    config: dict[str, Any]          # the config, as recorded
    inputs: dict[str, str]          # the footage's hash, each upstream result's stamp, and any extra input
    up_to_date: bool                # the project's result was made from these, and its files are there

    def record(self, files: list[str]) -> None:
        """Record the stage's new result (its files, config and inputs) and save the project."""
        self.project.record_stage(self.stage, files, self.config, self.inputs)
        self.project.save()


def begin(project: Project, stage: str, config: dict[str, Any], extra: dict[str, str] | None = None) -> Run:
    """The checks every stage makes before it runs: the footage is there and unchanged, each upstream result is
    there and current (ProjectError with the reason otherwise), and whether the result is already up to date.
    ``extra``: inputs beyond the footage and the upstream results (e.g. the speech model's digest)."""
    footage = project.checked_footage()
    inputs = {"footage": footage.sha256}
    for name in STAGES[stage].upstream:
        up = STAGES[name]
        if name not in project.stages:
            raise ProjectError(project.root, f"{up.unmade} yet: {up.todo}")
        require_current(project, name)
        inputs[name] = project.stages[name].created
    inputs.update(extra or {})
    return Run(project, stage, footage, config, inputs, not project.is_stale(stage, config, inputs))


@dataclass(frozen=True)
class StageStatus:
    state: str                      # "current", "stale" or "missing"
    reason: str = ""                # why it is stale or missing, and what to do

    @property
    def current(self) -> bool:
        return self.state == "current"


def status(project: Project) -> dict[str, StageStatus]:
    """Each declared stage's status in ``project``, upstream first."""
    out: dict[str, StageStatus] = {}
    footage = project.footage
    for stage in STAGES.values():
        rec = project.stages.get(stage.name)
        if rec is None:
            out[stage.name] = StageStatus("missing", f"{stage.unmade}: {stage.todo}")
            continue
        changed = rec.changed_file(project.root)
        if changed is not None:
            why = ("is missing" if not project.path(changed).exists() else
                   "is not the one recorded (a run was stopped between writing it and recording it, or it was "
                   "replaced)")
            out[stage.name] = StageStatus("stale", f"{stage.label}'s file {changed} {why}: {stage.redo}")
            continue
        if footage is None or rec.inputs.get("footage") != footage.sha256:
            now = Path(footage.path).name if footage is not None else "none"
            out[stage.name] = StageStatus("stale", f"{stage.was} made from other footage than the project's "
                                                   f"{now}: {', then '.join(s.redo for s in _chain(stage))}")
            continue
        out[stage.name] = _upstream_status(project, stage, out)
    return out


def _chain(stage: Stage) -> list[Stage]:
    """``stage`` and every stage it reads from, upstream first."""
    names = set()

    def visit(s: Stage) -> None:
        names.add(s.name)
        for up in s.upstream:
            visit(STAGES[up])

    visit(stage)
    return [s for s in STAGES.values() if s.name in names]


def _upstream_status(project: Project, stage: Stage, known: dict[str, StageStatus]) -> StageStatus:
    rec = project.stages[stage.name]
    for name in stage.upstream:
        up, up_label = known[name], STAGES[name].label
        if not up.current:
            return StageStatus("stale", f"{stage.was} made from {up_label}, which {'are' if STAGES[name].plural else 'is'} "
                                        f"{up.state} now "
                                        f"({up.reason}); then {stage.redo}")
        made = project.stages[name]
        if rec.inputs.get(name) != made.created:
            detail = f", now from the {made.config['encoder']} encoder" if name == "audio" else ""
            return StageStatus("stale", f"{stage.was} made from an earlier version of {up_label}, made again "
                                        f"since ({made.created}{detail}): {stage.redo}, or make {up_label} as "
                                        "before")
    return StageStatus("current")


def require_current(project: Project, stage: str) -> None:
    """ProjectError with the reason when ``stage``'s result is not current."""
    s = status(project)[stage]
    if not s.current:
        raise ProjectError(project.root, s.reason)
