"""The pipeline's stages declared once, and whether each result in a project is still current.

Every stage's record (core.project.StageRecord) names what it was made from: the footage's content hash and the
creation stamps of the upstream results it read. A result is *current* when those still match the project, *stale*
(with a reason a person can act on) when the footage or an upstream result changed since, *missing* when it was
never made. Consumers (evaluation, dubbing, the studio's viewport) ask ``require_current`` before reading a result,
so a re-import or a changed encoder ends in a message, never in a wrong video or a tensor error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import ProjectError
from core.project import Project


@dataclass(frozen=True)
class Stage:
    name: str                       # the key of its record in project.json
    label: str                      # what it made, for messages
    upstream: tuple[str, ...]       # the stages whose results it reads
    redo: str                       # the command that makes it again
    plural: bool = False            # whether its label takes "were"

    @property
    def was(self) -> str:
        return f"{self.label} {'were' if self.plural else 'was'}"


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("tracking", "the tracking", (), "track again (avatar-studio-cli track)"),
    Stage("audio", "the audio features", ("tracking",), "make the audio features again (avatar-studio-cli audio)",
          plural=True),
    Stage("avatar", "the avatar", ("tracking", "audio"), "train again (avatar-studio-cli train)"),
)}


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
            out[stage.name] = StageStatus("missing", f"{stage.label} has not been made: {stage.redo}")
            continue
        lost = [f for f in rec.files if not project.path(f).exists()]
        if lost:
            out[stage.name] = StageStatus("stale", f"{stage.label}'s file {lost[0]} is missing: {stage.redo}")
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
