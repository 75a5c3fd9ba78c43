"""One line in a panel: whether its stage's result in the open project is current, stale (and why) or missing,
as core.pipeline says, so the studio and the CLI's ``info`` never disagree."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from studio.state import StudioState

TEXT = {"current": "Result: current.", "missing": "Result: not made yet."}


class StageStatusLabel(QLabel):
    def __init__(self, state: StudioState, stage: str, only_stale: bool = False):
        """``only_stale``: shown only while the result is stale (where the panel already says the rest)."""
        super().__init__()
        self.state, self.stage, self.only_stale = state, stage, only_stale
        self.setWordWrap(True)
        self.setObjectName("stageStatus")
        state.stages_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Show the stage's status as the state holds it now."""
        s = self.state.stage(self.stage)
        self.setVisible(s is not None and not (self.only_stale and s.state != "stale"))
        if s is None:
            self.clear()
            return
        self.setText(TEXT.get(s.state) or f"Result: stale. {s.reason[0].upper()}{s.reason[1:]}.")
        self.setToolTip(s.reason)
