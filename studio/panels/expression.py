"""Expression: a slider per control at the playhead. SyncTalk++'s seven expression controls (brows and blinks,
which drive the avatar's upper face) come first, then the head pose's offsets, then the rest of ARKit's blendshapes
grouped (their edits reach the CSV export; the avatar's mouth follows the speech). Moving a slider keys the control
at the playhead; the key button keys or unkeys it; Link L/R moves a left/right pair together; reset per control,
per group or all. Every change is one undo step (a drag included)."""

from __future__ import annotations

from itertools import count

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPolygonF
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QGridLayout,
                               QGroupBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider, QSpinBox, QStyle,
                               QStyleOptionSlider, QToolButton, QVBoxLayout, QWidget)

from core.expression.generator import GenerateJob, GeneratorConfig
from core.expression.keyframes import BLEND_CHANNELS, POSE_CHANNELS, STABILIZER_RANGE
from core.tracking.landmarks import EXPRESSION_BLENDSHAPES
from studio.state import StudioState

# Slider range per pose control: (lowest, highest, step) of the offset, degrees or the pose's units (cm).
POSE_RANGES = {"yaw": (-30, 30, 0.1), "pitch": (-30, 30, 0.1), "roll": (-30, 30, 0.1),
               "tx": (-5, 5, 0.01), "ty": (-5, 5, 0.01), "tz": (-15, 15, 0.01)}
BLEND_STEP = 0.001


def _group_of(name: str) -> str:
    for prefix, group in (("brow", "Brows"), ("eye", "Eyes"), ("cheek", "Cheeks and nose"),
                          ("nose", "Cheeks and nose"), ("jaw", "Jaw"), ("mouth", "Mouth")):
        if name.startswith(prefix):
            return group
    raise ValueError(name)


def groups() -> list[tuple[str, tuple[str, ...], str]]:
    """(title, controls, note) in the panel's order."""
    core = EXPRESSION_BLENDSHAPES
    rest = [c for c in BLEND_CHANNELS if c not in core]
    out = [("Core expression", core, "Drive the avatar's brows and eyes"),
           ("Head pose", POSE_CHANNELS, "Offsets to the stabilized pose: degrees, cm")]
    for title in ("Brows", "Eyes", "Cheeks and nose", "Jaw", "Mouth"):
        names = tuple(c for c in rest if _group_of(c) == title)
        if names:
            out.append((title, names, "Reach the CSV export; the avatar's mouth follows the speech"))
    return out


def partner(name: str) -> str | None:
    """The other side's control of a left/right pair (``browDownLeft`` -> ``browDownRight``), if any."""
    for a, b in (("Left", "Right"), ("Right", "Left")):
        if name.endswith(a) and name[: -len(a)] + b in BLEND_CHANNELS:
            return name[: -len(a)] + b
    return None


class TrackedSlider(QSlider):
    """A slider that also marks the tracked value (a grey notch under the groove): the edit is the distance."""

    def __init__(self) -> None:
        super().__init__(Qt.Orientation.Horizontal)
        self.tracked: int | None = None  # in the slider's units

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().paintEvent(event)
        if self.tracked is None:
            return
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        groove = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                             QStyle.SubControl.SC_SliderGroove, self)
        handle = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                             QStyle.SubControl.SC_SliderHandle, self)
        span = groove.width() - handle.width()
        x = groove.x() + handle.width() / 2 + QStyle.sliderPositionFromValue(
            self.minimum(), self.maximum(), min(max(self.tracked, self.minimum()), self.maximum()), span)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(190, 190, 200))
        y = self.height() - 1
        p.drawPolygon(QPolygonF([QPointF(x, y - 5), QPointF(x - 4, y), QPointF(x + 4, y)]))


class ControlRow:
    """One control's widgets in a group's grid: name, slider, value (tracked value in grey), key, reset."""

    def __init__(self, panel: ExpressionPanel, grid: QGridLayout, row: int, name: str):
        self.panel, self.name = panel, name
        low, high, step = POSE_RANGES.get(name, (0.0, 1.0, BLEND_STEP))
        self.step = step
        self.label = QPushButton(name)
        self.label.setFlat(True)
        self.label.setCheckable(True)
        self.label.setStyleSheet("text-align: left; padding: 1px 4px;")
        self.label.setToolTip("Select: K keys it, the Curves panel shows it")
        self.label.clicked.connect(lambda: panel.state.edits.select(name))
        self.slider = TrackedSlider()
        self.slider.setRange(round(low / step), round(high / step))
        self.slider.setMinimumWidth(60)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the arrows stay the transport's
        self.slider.sliderPressed.connect(panel.begin_drag)
        self.slider.valueChanged.connect(lambda v: panel.slider_moved(name, v * step))
        self.value = QLabel("")
        self.value.setMinimumWidth(40)
        self.key_button = QToolButton()
        self.key_button.setToolTip("Key at the playhead (or remove the key there)")
        self.key_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.key_button.clicked.connect(lambda: panel.toggle_key(name))
        reset = QToolButton()
        reset.setText("↺")
        reset.setToolTip(f"Reset {name}: remove its edits")
        reset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        reset.clicked.connect(lambda: panel.reset((name,), f"Reset {name}"))
        for col, w in enumerate((self.label, self.slider, self.value, self.key_button, reset)):
            grid.addWidget(w, row, col)

    def show(self, frame: int) -> None:
        edits = self.panel.state.edits
        value, tracked = edits.value(self.name, frame), edits.tracked(self.name, frame)
        self.slider.blockSignals(True)
        self.slider.setValue(round(value / self.step))
        self.slider.blockSignals(False)
        pose = self.name in POSE_CHANNELS
        self.slider.tracked = None if pose else round(tracked / self.step)  # a pose slider is an offset from 0
        self.slider.update()
        self.value.setText(f"{value:+.2f}" if pose else f"{value:.3f}")
        tip = (f"offset {value:.3f}; the stabilized pose is {tracked:.3f}" if pose else
               f"edited {value:.4f}; tracked {tracked:.4f} (the grey notch)")
        self.value.setToolTip(tip)
        self.slider.setToolTip(tip)
        keyed = edits.edits.lane(self.name).key_at(frame) is not None
        self.key_button.setText("◆" if keyed else "◇")
        self.label.setChecked(edits.selected == self.name)


class GenerateDialog(QDialog):
    """What "Generate from Speech…" asks: the frames to fill, and the generator's seed, blink rate and
    expressiveness."""

    def __init__(self, frames: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Generate brows and blinks from the footage's speech")
        self.first, self.last = QSpinBox(), QSpinBox()
        for box, value in ((self.first, 0), (self.last, frames - 1)):
            box.setRange(0, frames - 1)
            box.setValue(value)
        self.seed = QSpinBox()
        self.seed.setRange(0, 1_000_000)
        self.seed.setToolTip("Another number, another draw of blinks and brow motion")
        self.rate = QDoubleSpinBox()
        self.rate.setRange(0, 120)
        self.rate.setSpecialValueText("as people do")
        self.rate.setSuffix(" a minute")
        self.rate.setToolTip("How often the eyes blink (lowest: the rate learnt from the corpus)")
        self.expressive = QDoubleSpinBox()
        self.expressive.setRange(0, 3)
        self.expressive.setSingleStep(0.1)
        self.expressive.setValue(1.0)
        self.expressive.setToolTip("How far the brows move: 0 still, 1 as learnt")
        self.in_range = QCheckBox("Keep expressions in the subject's range")
        self.in_range.setChecked(True)
        self.in_range.setToolTip("Rebuild the generated motion from what this face does in its footage (its "
                                 "expression codebook)")
        form = QFormLayout(self)
        form.addRow("From frame", self.first)
        form.addRow("To frame", self.last)
        form.addRow("Seed", self.seed)
        form.addRow("Blinks", self.rate)
        form.addRow("Expressiveness", self.expressive)
        form.addRow("", self.in_range)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def config(self) -> GeneratorConfig:
        return GeneratorConfig(seed=self.seed.value(), blink_rate=self.rate.value() or None,
                               expressiveness=self.expressive.value())


class ExpressionPanel(QWidget):
    def __init__(self, state: StudioState):
        super().__init__()
        self.state = state
        self.rows: dict[str, ControlRow] = {}
        self._drags = count()
        self._drag: int | None = None  # the token merging a slider drag into one undo step
        self.link = QCheckBox("Link L/R")
        self.link.setToolTip("Move a left/right pair together")
        self.link.setChecked(True)
        reset_all = QPushButton("Reset All")
        reset_all.clicked.connect(state.edits.reset_all)
        self.message = QLabel("")
        top = QHBoxLayout()
        top.addWidget(self.link)
        top.addStretch(1)
        top.addWidget(reset_all)
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(2, 2, 2, 2)
        self.boxes: dict[str, QGroupBox] = {}
        for title, names, note in groups():
            box = self.boxes[title] = QGroupBox(title)
            box.setToolTip(note)
            grid = QGridLayout(box)
            grid.setContentsMargins(4, 2, 4, 2)
            grid.setVerticalSpacing(1)
            grid.setColumnStretch(1, 1)
            caption = QLabel(note)
            caption.setStyleSheet("color: #999;")
            grid.addWidget(caption, 0, 0, 1, 3)
            reset = QPushButton("Reset group")
            reset.clicked.connect(lambda _=False, n=names, t=title: self.reset(n, f"Reset {t.lower()}"))
            grid.addWidget(reset, 0, 3, 1, 2)
            if names == EXPRESSION_BLENDSHAPES:
                generate = QPushButton("Generate from Speech…")
                generate.setToolTip("Fill a range of these controls with brows and blinks generated for the "
                                    "footage's speech (one undo step; the keys stay editable)")
                generate.clicked.connect(self.generate_dialog)
                grid.addWidget(generate, len(names) + 1, 0, 1, 5)
            for i, name in enumerate(names):
                self.rows[name] = ControlRow(self, grid, i + 1, name)
            if names == POSE_CHANNELS:
                self._stabilizer_row(grid, len(names) + 1)
            column.addWidget(box)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(scroll, 1)

        edits = state.edits
        edits.changed.connect(self.refresh)
        edits.selection_changed.connect(self.refresh)
        state.frame_changed.connect(self.refresh)
        self.refresh()

    def _stabilizer_row(self, grid: QGridLayout, row: int) -> None:
        """The Head-Sync Stabilizer's strength: its smoothness term times this, applied when the slider is let go
        (the bundle adjustment runs again in a job)."""
        label = QLabel("stabilizer")
        label.setToolTip("How steady the head is held: the stabilizer's smoothness times this (1: as tracked)")
        self.stabilizer = QSlider(Qt.Orientation.Horizontal)
        self.stabilizer.setRange(round(STABILIZER_RANGE[0] * 100), round(STABILIZER_RANGE[1] * 100))
        self.stabilizer.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.stabilizer.setToolTip(label.toolTip())
        self.stabilizer_value = QLabel("")
        self.stabilizer.valueChanged.connect(lambda v: self.stabilizer_value.setText(f"{v / 100:.2f}×"))
        self.stabilizer.valueChanged.connect(lambda v: not self.stabilizer.isSliderDown() and self.set_stabilizer(v))
        self.stabilizer.sliderReleased.connect(lambda: self.set_stabilizer(self.stabilizer.value()))
        reset = QToolButton()
        reset.setText("↺")
        reset.setToolTip("Stabilize as tracked (1×)")
        reset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        reset.clicked.connect(lambda: self.set_stabilizer(100))
        for col, w in ((0, label), (1, self.stabilizer), (2, self.stabilizer_value), (4, reset)):
            grid.addWidget(w, row, col)

    def generate_dialog(self) -> GenerateDialog:
        """Ask for the range and the generator's controls (window-modal, never exec'd); generate when accepted."""
        dialog = GenerateDialog(self.state.edits.frames, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.generate(dialog.first.value(), dialog.last.value(), dialog.config(),
                                                      dialog.in_range.isChecked()))
        dialog.open()
        return dialog

    def generate(self, first: int, last: int, config: GeneratorConfig, in_range: bool = True) -> None:
        """Generate the core controls for the footage's speech in a job, then fill ``first..last`` with them."""
        edits = self.state.edits
        project = edits.project
        self.state.jobs.run(GenerateJob(project, edits.tracking, config, in_range),
                            on_finished=lambda values: edits.project is project and
                            edits.fill(EXPRESSION_BLENDSHAPES, first, last, values))

    def set_stabilizer(self, percent: int) -> None:
        self.state.edits.set_stabilizer(percent / 100)

    def linked(self, name: str) -> tuple[str, ...]:
        other = partner(name) if self.link.isChecked() else None
        return (name, other) if other else (name,)

    def begin_drag(self) -> None:
        self._drag = next(self._drags)

    def slider_moved(self, name: str, value: float) -> None:
        """Key ``name`` (and its partner, linked) at the playhead to ``value``; a drag is one undo step."""
        row = self.rows[name]
        merge = ("slider", self._drag) if row.slider.isSliderDown() else None
        self.state.edits.select(name)
        self.state.edits.set_values({n: value for n in self.linked(name)}, self.state.frame, merge)

    def toggle_key(self, name: str) -> None:
        edits, frame = self.state.edits, self.state.frame
        names = self.linked(name)
        if edits.edits.lane(name).key_at(frame) is not None:
            edits.remove_keys(names, frame)
        else:
            edits.key(names, frame)

    def reset(self, names: tuple[str, ...], label: str) -> None:
        self.state.edits.reset(names, label)

    def refresh(self) -> None:
        ready = self.state.edits.project is not None
        self.setEnabled(ready)
        self.message.setText("" if ready else "Track the face first: the controls edit the tracked expression.")
        self.message.setVisible(not ready)
        if ready:
            for row in self.rows.values():
                row.show(self.state.frame)
            edits = self.state.edits
            self.stabilizer.blockSignals(True)
            self.stabilizer.setValue(round(edits.edits.stabilizer * 100))
            self.stabilizer.blockSignals(False)
            waiting = edits.edits.stabilizer != edits.stabilizer
            self.stabilizer_value.setText(f"{edits.edits.stabilizer:.2f}×" + (" …" if waiting else ""))
