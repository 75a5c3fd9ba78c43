"""Export dialog: what File ▸ Export Dub… asks before dubbing: the speech file and the stretch of it to speak,
the output's size and quality, where the upper face comes from, the visible AI watermark and where the mp4 goes.
It only asks: the main window runs the ``DubJob`` it makes. Export stays disabled, with the reason shown beside the field, until the inputs
can make a dub."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget)

from core.dub import SIZES, DubConfig, DubJob, check_output, output_size, speech_info
from core.errors import MediaError
from core.media import MediaInfo
from core.project import Project

SPEECH_FILTER = ("Audio and video (*.wav *.mp3 *.m4a *.aac *.flac *.ogg *.opus *.mp4 *.mov *.mkv *.avi *.m4v *.webm)"
                 ";;All files (*)")
SIZE_NAMES = {"source": "Source", "512": "512 px high", "1080p": "1080p"}  # by core.dub.SIZES key
QUALITIES = {"High": 18, "Medium": 23, "Small file": 28}  # label -> x264 CRF
PROBLEM_STYLE = "color: #ff8a70;"


class ExportDialog(QDialog):
    """Asks for a dub of ``project``'s footage (imported: the dialog reads its stored size and rate); ``job()`` is
    what to run once it is accepted. File dialogs start in ``speech_dir`` and ``output_dir`` (the folders used
    last)."""

    def __init__(self, project: Project, speech_dir: Path, output_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export Dub")
        self.project = project
        self.speech_dir, self.output_dir = speech_dir, output_dir
        self.speech_info: MediaInfo | None = None  # the probed speech file; None while it cannot be used
        footage = project.footage.info  # as imported: the dub's frame rate and source size
        self.fps = Fraction(footage["fps"])
        source = (footage["width"], footage["height"])

        self.speech_edit = QLineEdit()
        self.speech_edit.setPlaceholderText("The speech to put in the avatar's mouth: audio, or a video's sound")
        self.speech_edit.textChanged.connect(self._speech_changed)
        self.speech_label = QLabel()
        self.speech_label.setWordWrap(True)

        self.start_box, self.end_box = QDoubleSpinBox(), QDoubleSpinBox()
        for box, tip in ((self.start_box, "Where in the speech the dub begins"),
                         (self.end_box, "Where in the speech the dub ends")):
            box.setDecimals(2)
            box.setSingleStep(0.5)
            box.setSuffix(" s")
            box.setToolTip(tip)
            box.valueChanged.connect(self._validate)
        self.range_label = QLabel()

        self.size_box = QComboBox()
        for key in SIZES:
            w, h = output_size(source, key)
            self.size_box.addItem(f"{SIZE_NAMES[key]} ({w}×{h})", key)
        self.quality_box = QComboBox()
        for text, crf in QUALITIES.items():
            self.quality_box.addItem(text, crf)
            self.quality_box.setItemData(self.quality_box.count() - 1, f"H.264 at CRF {crf}: lower looks better "
                                         "and takes more space", Qt.ItemDataRole.ToolTipRole)
        self.face_box = QComboBox()
        for key, text, tip in (("edited", "Footage with your edits", "The footage's brows and blinks, looped with it, "
                                "with the Expression panel's edits"),
                               ("footage", "Footage as tracked", "The footage's brows and blinks, looped with it"),
                               ("generated", "Generated from the speech", "Brows and blinks made for the new speech "
                                "by the expression generator: no loop repeats")):
            self.face_box.addItem(text, key)
            self.face_box.setItemData(self.face_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.watermark_box = QCheckBox("Mark the video as AI-generated (visible watermark)")
        self.watermark_box.setChecked(True)
        self.watermark_box.setToolTip("The file's metadata always says the video is synthetic and made with "
                                      "Avatar Studio, with or without the visible mark")

        self.output_edit = QLineEdit(str(project.root / f"{project.name}_dub.mp4"))
        self.output_edit.textChanged.connect(self._validate)
        self.output_label = QLabel()
        self.output_label.setWordWrap(True)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        time_range = QHBoxLayout()
        time_range.addWidget(self.start_box)
        time_range.addWidget(QLabel("to"))
        time_range.addWidget(self.end_box)
        time_range.addWidget(self.range_label, 1)
        form = QFormLayout()
        form.addRow("Speech:", self._with_browse(self.speech_edit, self._browse_speech))
        form.addRow("", self.speech_label)
        form.addRow("Time range:", time_range)
        form.addRow("Size:", self.size_box)
        form.addRow("Quality:", self.quality_box)
        form.addRow("Upper face:", self.face_box)
        form.addRow("", self.watermark_box)
        form.addRow("Save as:", self._with_browse(self.output_edit, self._browse_output))
        form.addRow("", self.output_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(620)
        self._speech_changed()

    @staticmethod
    def _with_browse(edit: QLineEdit, slot: Callable[[], None]) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(slot)
        row.addWidget(button)
        return row

    # --- what it makes ------------------------------------------------------------------------------
    def config(self) -> DubConfig:
        return DubConfig(start=self.start_box.value(), end=self.end_box.value(), size=self.size_box.currentData(),
                         crf=self.quality_box.currentData(), watermark=self.watermark_box.isChecked(),
                         expression=self.face_box.currentData())

    def job(self) -> DubJob:
        return DubJob(self.project, self.speech_path(), self.output_path(), self.config())

    def speech_path(self) -> Path:
        return Path(self.speech_edit.text().strip()).expanduser()

    def output_path(self) -> Path:
        return Path(self.output_edit.text().strip()).expanduser()

    def set_speech(self, path: str | Path) -> None:
        self.speech_edit.setText(str(path))

    def set_output(self, path: str | Path) -> None:
        self.output_edit.setText(str(path))

    # --- checks ---------------------------------------------------------------------------------------
    def _speech_changed(self) -> None:
        """Probe the speech file (inline: tens of ms for minutes of speech, nothing decoded) and fit the range to
        it."""
        self.speech_info = None
        text = self.speech_edit.text().strip()
        if not text:
            self._say(self.speech_label, "Choose the speech: an audio file, or a video whose sound is used.")
        else:
            try:
                info = speech_info(self.speech_path())
            except MediaError as e:
                self._say(self.speech_label, f"{e.path.name} {e.problem}.", problem=True)
            else:
                self.speech_info = info
                duration = info.audio[0].duration
                video = " · a video: its sound is used" if info.has_video else ""
                self._say(self.speech_label, f"{duration:.2f} s of speech{video}")
                for box in (self.start_box, self.end_box):
                    box.blockSignals(True)
                    box.setMaximum(duration)
                    box.blockSignals(False)
                self.start_box.setValue(min(self.start_box.value(), duration))
                self.end_box.setValue(duration)
        for box in (self.start_box, self.end_box):
            box.setEnabled(self.speech_info is not None)
        self._validate()

    def _validate(self) -> None:
        """Show what stops the export, if anything, and enable Export when nothing does."""
        ok = self.speech_info is not None
        frames = round((self.end_box.value() - self.start_box.value()) * self.fps)
        if not ok:
            self.range_label.clear()
        elif frames < 1:
            self._say(self.range_label, "an empty range", problem=True)
            ok = False
        else:
            self._say(self.range_label, f"{frames} frames")
        out = self.output_path()
        problem = None
        if not self.output_edit.text().strip():
            problem = "Choose where to save the dub."
        else:
            try:
                check_output(out, self._inputs())
            except MediaError as e:
                problem = f"{e.path.name} {e.problem}."
        if problem:
            self._say(self.output_label, problem, problem=True)
        else:
            self._say(self.output_label, f"{out.name} exists and will be replaced." if out.exists() else "")
        self.export_button.setEnabled(ok and problem is None)

    def _inputs(self) -> list[Path]:
        return [Path(self.project.footage.path)] + ([self.speech_path()] if self.speech_edit.text().strip() else [])

    @staticmethod
    def _say(label: QLabel, text: str, problem: bool = False) -> None:
        label.setText(text)
        label.setStyleSheet(PROBLEM_STYLE if problem else "")

    # --- file dialogs ---------------------------------------------------------------------------------
    def _browse_speech(self) -> None:
        start = self.speech_path().parent if self.speech_info else self.speech_dir
        path, _ = QFileDialog.getOpenFileName(self, "Speech to dub", str(start), SPEECH_FILTER)
        if path:
            self.set_speech(path)

    def _browse_output(self) -> None:
        start = self.output_dir / self.output_path().name
        path, _ = QFileDialog.getSaveFileName(self, "Save the dub as", str(start), "MP4 video (*.mp4)")
        if path:
            self.set_output(path if path.lower().endswith(".mp4") else f"{path}.mp4")
