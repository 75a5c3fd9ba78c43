"""The session's expression edits, apart from any view: the performance the edits go over (the blendshapes and the
head pose stabilized at the edits' strength, re-stabilized in a job when it changes), the keyframed edits
(``core.expression.keyframes``), the selected control and key, and the undo stack every edit goes through. A drag
is one undo step; the edits and their undo history are saved into the project shortly after each change (and at
once on ``flush``), so quitting and reopening restores both."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from dataclasses import replace

from core.errors import AvatarStudioError
from core.expression.edits import HISTORY_LIMIT, History, RestabilizeJob, load_keys, performance, save_keys
from core.expression.keyframes import BLEND_CHANNELS, POSE_CHANNELS, Edits, Key
from core.project import Project
from core.tracking.landmarks import BLENDSHAPE_NAMES
from core.tracking.pose import euler_degrees
from studio.workers import JobRunner

SAVE_DELAY_MS = 400


class EditCommand(QUndoCommand):
    """One undo step: the edits before and after it. Steps sharing a ``merge`` token (one slider or key drag)
    merge into one."""

    def __init__(self, session: EditSession, before: Edits, after: Edits, label: str, merge: object = None):
        super().__init__(label)
        self.session, self.before, self.after, self.merge = session, before, after, merge

    def id(self) -> int:  # noqa: A003 - Qt API
        return -1 if self.merge is None else 1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API
        if not isinstance(other, EditCommand) or other.merge is None or other.merge != self.merge:
            return False
        self.after = other.after
        return True

    def redo(self) -> None:
        self.session._show(self.after)

    def undo(self) -> None:
        self.session._show(self.before)


class EditSession(QObject):
    changed = Signal()             # the edits changed: an edit, an undo or redo, or another project's edits
    selection_changed = Signal()   # the selected control or key
    notice = Signal(str)           # something the user must read (a damaged edits file, a failed save)

    def __init__(self, jobs: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs  # re-stabilizes the head pose when the strength changes
        self.undo = QUndoStack(self)
        self.undo.setUndoLimit(HISTORY_LIMIT)
        self.project: Project | None = None
        self.tracking: dict[str, np.ndarray] | None = None
        self.edits = Edits()
        self.performance: np.ndarray | None = None   # float32 [T,52] the take or the tracked blendshapes
        self.rot: np.ndarray | None = None           # float32 [T,3,3] the head pose stabilized at the strength shown
        self.trans: np.ndarray | None = None         # float32 [T,3] its translation
        self.angles: np.ndarray | None = None        # float32 [T,3] its yaw, pitch, roll (degrees)
        self.stabilizer = 1.0                        # the strength ``rot`` and ``trans`` are stabilized at
        self._poses: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # strength -> the pose, this session's
        self._wanted: float | None = None            # a strength whose pose is being made or waits for the runner
        jobs.ended.connect(lambda _name: self._wanted is not None and self._restabilize())
        self.selected = "browInnerUp"                # the control K keys and the curve editor shows
        self.selected_key: tuple[str, int] | None = None  # (control, frame) of the key Delete removes
        self._loading = False
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.flush)
        self.undo.indexChanged.connect(self._stack_moved)

    # --- the project's edits -------------------------------------------------------------------------
    def load(self, project: Project | None, tracking: dict[str, np.ndarray] | None) -> None:
        """Show ``project``'s edits over its ``tracking`` (none without either), its undo history restored."""
        self.flush()
        self._loading = True
        try:
            self.undo.clear()
            self.project = project if tracking is not None else None
            self.tracking = tracking if self.project is not None else None
            self.edits, self.selected_key = Edits(), None
            self.performance = self.angles = self.trans = self.rot = None
            self._poses, self._wanted, self.stabilizer = {}, None, 1.0
            history = History.start(Edits())
            if self.project is not None:
                try:
                    self.performance = performance(project, tracking)
                    history = load_keys(project)
                except AvatarStudioError as e:
                    self.notice.emit(str(e))
                self.performance = (self.performance if self.performance is not None
                                    else np.array(tracking["blendshapes"], np.float32))
                self._poses[1.0] = (tracking["rot"], tracking["trans"])
                self._set_pose(1.0)
            self.edits = history.states[0]
            for i, label in enumerate(history.labels):
                self.undo.push(EditCommand(self, history.states[i], history.states[i + 1], label))
            self.undo.setIndex(history.index)
            self.edits = history.states[history.index]
            self.undo.setClean()
        finally:
            self._loading = False
        self._follow_stabilizer()
        self.changed.emit()
        self.selection_changed.emit()

    def history(self) -> History:
        """The undo stack as the project keeps it."""
        commands = [self.undo.command(i) for i in range(self.undo.count())]
        if not commands:
            return History.start(self.edits)
        return History((commands[0].before, *(c.after for c in commands)), tuple(c.text() for c in commands),
                       self.undo.index())

    def flush(self) -> None:
        """Save the edits and their undo history now, if anything changed since the last save."""
        self._save_timer.stop()
        if self.project is None or self.undo.isClean():
            return
        try:
            save_keys(self.project, self.history())
        except (AvatarStudioError, OSError) as e:
            self.notice.emit(f"The expression edits could not be saved: {e}")
            return
        self.undo.setClean()

    @property
    def frames(self) -> int:
        return 0 if self.performance is None else len(self.performance)

    # --- reading -------------------------------------------------------------------------------------
    def tracked(self, channel: str, frame: int) -> float:
        """The performance's value of ``channel`` at ``frame``: a blendshape's coefficient, or for a pose control
        the stabilized angle (degrees) or translation."""
        if self.performance is None:
            return 0.0
        frame = min(max(frame, 0), self.frames - 1)
        if channel in POSE_CHANNELS:
            i = POSE_CHANNELS.index(channel)
            return float(self.angles[frame, i] if i < 3 else self.trans[frame, i - 3])
        return float(self.performance[frame, BLENDSHAPE_NAMES.index(channel)])

    def edited(self, channel: str, frame: int) -> float:
        """``channel``'s edited value at ``frame``: a blendshape's coefficient, a pose control's angle or
        translation."""
        lane = self.edits.lane(channel)
        value = float(lane.over(np.array([self.tracked(channel, frame)]), np.array([frame]))[0])
        return value if channel in POSE_CHANNELS else float(np.clip(value, 0.0, 1.0))

    def value(self, channel: str, frame: int) -> float:
        """What a slider shows: a blendshape's edited coefficient, or a pose control's offset from the stabilized
        pose."""
        edited = self.edited(channel, frame)
        return edited - self.tracked(channel, frame) if channel in POSE_CHANNELS else edited

    def curves(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        """(performance [T], edited [T]) of ``channel`` over the footage, for the curve editor."""
        t = np.arange(self.frames)
        if channel in POSE_CHANNELS:
            i = POSE_CHANNELS.index(channel)
            base = (self.angles[:, i] if i < 3 else self.trans[:, i - 3]).astype(np.float64)
            return base, self.edits.lane(channel).over(base, t)
        base = self.performance[:, BLENDSHAPE_NAMES.index(channel)].astype(np.float64)
        return base, np.clip(self.edits.lane(channel).over(base, t), 0.0, 1.0)

    def key_frames(self) -> list[int]:
        """The frames keyed on any control, sorted."""
        return sorted({k.frame for lane in self.edits.lanes.values() for k in lane.keys})

    # --- editing: each call is one undo step (or merges into the drag it belongs to) ----------------------
    def set_values(self, values: dict[str, float], frame: int, merge: object = None) -> None:
        """Key each control of ``values`` at ``frame`` so that it shows that value there (``value``'s meaning)."""
        edits = self.edits
        for channel, v in values.items():
            lane, base = edits.lane(channel), self.tracked(channel, frame)
            edited = base + v if channel in POSE_CHANNELS else v
            edits = edits.with_lane(channel, lane.with_key(frame, lane.key_for(base, edited)))
        self._push(edits, f"Key {', '.join(values)}", merge)

    def key(self, channels: tuple[str, ...], frame: int) -> None:
        """A key at ``frame`` on each of ``channels`` holding the curve's value there (K)."""
        edits = self.edits
        for c in channels:
            lane = edits.lane(c)
            edits = edits.with_lane(c, lane.with_key(frame, float(lane.at(np.array([frame]))[0])))
        self._push(edits, f"Key {', '.join(channels)}")

    def remove_keys(self, channels: tuple[str, ...], frame: int) -> None:
        """Remove the keys at ``frame`` from ``channels`` (Shift+K, Delete)."""
        edits = self.edits
        for c in channels:
            edits = edits.with_lane(c, edits.lane(c).without_key(frame))
        if self.selected_key is not None and self.selected_key[1] == frame and self.selected_key[0] in channels:
            self.select_key(None)
        self._push(edits, "Delete key")

    def move_key(self, channel: str, frame: int, to: int, value: float | None = None, copy: bool = False,
                 merge: object = None) -> None:
        """Move (or copy) ``channel``'s key at ``frame`` to frame ``to``, and to ``value`` (an offset) when given."""
        lane = self.edits.lane(channel)
        key = lane.key_at(frame)
        if key is None:
            return
        moved = lane.moved(frame, to, copy) if to != frame else lane
        if value is not None:
            moved = moved.with_key(to, value)
        self._push(self.edits.with_lane(channel, moved), "Copy key" if copy else "Move key", merge)
        self.select_key((channel, to))

    def set_interp(self, channel: str, frame: int, interp: str) -> None:
        lane = self.edits.lane(channel)
        key = lane.key_at(frame)
        if key is not None and key.interp != interp:
            self._push(self.edits.with_lane(channel, lane.with_key(frame, key.value, interp)),
                       f"Interpolation {interp}")

    def set_weight(self, channel: str, weight: float, merge: object = None) -> None:
        lane = self.edits.lane(channel)
        self._push(self.edits.with_lane(channel, replace(lane, weight=float(weight))), f"Weight {channel}", merge)

    def set_mode(self, channel: str, mode: str) -> None:
        """Make ``channel``'s lane add to the performance (``offset``) or replace it (``override``), its keys
        converted so the edited values at the keys stay."""
        lane = self.edits.lane(channel)
        if mode == lane.mode:
            return
        converted = replace(lane, mode=mode, keys=())
        for k in lane.keys:
            base = self.tracked(channel, k.frame)
            edited = float(lane.over(np.array([base]), np.array([k.frame]))[0])
            converted = converted.with_key(k.frame, converted.key_for(base, edited), k.interp)
        self._push(self.edits.with_lane(channel, converted), f"{mode.title()} {channel}")

    def reset(self, channels: tuple[str, ...], label: str) -> None:
        """Drop the edits of ``channels`` (a control, a group, all)."""
        self._push(self.edits.without(channels), label)

    def fill(self, channels: tuple[str, ...], first: int, last: int, values: np.ndarray,
             label: str = "Generate brows and blinks") -> None:
        """Key ``channels`` at every frame of ``first..last`` so that they show ``values`` [T, len(channels)] there
        (a frame's row each; linear between), and just outside the range where their curves were, so the rest of
        the footage stays as it was: one undo step, every key editable afterwards."""
        edits = self.edits
        first, last = max(0, first), min(last, self.frames - 1)
        for j, c in enumerate(channels):
            lane = edits.lane(c)
            around = [f for f in (first - 1, last + 1) if 0 <= f < self.frames and lane.key_at(f) is None]
            kept = [k for k in lane.keys if not first <= k.frame <= last]
            kept += [Key(f, float(lane.at(np.array([f]))[0]), "linear") for f in around]
            made = [Key(f, lane.key_for(self.tracked(c, f), float(values[f, j])), "linear")
                    for f in range(first, last + 1)]
            edits = edits.with_lane(c, replace(lane, keys=tuple(sorted(kept + made, key=lambda k: k.frame))))
        self._push(edits, label)

    def reset_all(self) -> None:
        """Drop every edit: the keys and the stabilizer's strength."""
        self._push(Edits(), "Reset all")

    def set_stabilizer(self, strength: float) -> None:
        """The head pose stabilized at ``strength`` times the tracking's smoothness (re-run in a job)."""
        self._push(replace(self.edits, stabilizer=round(float(strength), 2)), "Stabilizer strength")

    # --- selection -----------------------------------------------------------------------------------
    def select(self, channel: str) -> None:
        if channel not in BLEND_CHANNELS + POSE_CHANNELS:
            raise ValueError(f"no control named {channel!r}")
        if channel != self.selected:
            self.selected = channel
            self.selection_changed.emit()

    def select_key(self, key: tuple[str, int] | None) -> None:
        if key != self.selected_key:
            self.selected_key = key
            if key is not None:
                self.selected = key[0]
            self.selection_changed.emit()

    # --- internals -----------------------------------------------------------------------------------
    def _push(self, edits: Edits, label: str, merge: object = None) -> None:
        if self.project is not None and edits != self.edits:
            self.undo.push(EditCommand(self, self.edits, edits, label, merge))

    def _show(self, edits: Edits) -> None:
        self.edits = edits
        if not self._loading:
            self._follow_stabilizer()
            self.changed.emit()

    def _set_pose(self, strength: float) -> None:
        rot, trans = self._poses[strength]
        self.rot, self.trans = np.asarray(rot, np.float32), np.asarray(trans, np.float32)
        self.angles, self.stabilizer = euler_degrees(self.rot), strength

    def _follow_stabilizer(self) -> None:
        """Show the pose at the edits' strength: at once when this session made it, else from a job."""
        strength = self.edits.stabilizer
        if self.project is None or strength == self.stabilizer:
            self._wanted = None
        elif strength in self._poses:
            self._wanted = None
            self._set_pose(strength)
        else:
            self._wanted = strength
            self._restabilize()

    def _restabilize(self) -> None:
        if self.jobs.worker is not None:
            return  # tried again when the running job ends
        strength, project = self._wanted, self.project

        def made(pose: tuple[np.ndarray, np.ndarray]) -> None:
            if project is not self.project:
                return
            self._poses[strength] = pose
            if self._wanted == strength:
                self._wanted = None
            if self.edits.stabilizer == strength:
                self._set_pose(strength)
                self.changed.emit()

        def failed(_error: Exception) -> None:
            self._wanted = None  # the runner's failed signal tells the user; the pose stays as it was

        self.jobs.run(RestabilizeJob(project, self.tracking, strength), on_finished=made, on_errored=failed,
                      on_cancelled=lambda: failed(None))

    def _stack_moved(self, _index: int) -> None:
        if not self._loading:
            self._save_timer.start()
