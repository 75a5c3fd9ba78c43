"""The project's edited expression track: the footage's tracked blendshapes [T,52] as an artist changed them.

Saved beside the tracking (``expression_edits.npz``, the tracking's contract: ``blendshapes`` [T,52] in ARKit
order with ``blendshape_names``), and read wherever the avatar is driven for output (dubbing), so the edits
reach the export. Evaluation keeps the tracked track: it compares with the real frames.
"""

from __future__ import annotations

import numpy as np

from core.errors import ProjectError
from core.fsutil import load_npz, save_npz
from core.layout import EDITS_FILE
from core.project import Project, damaged
from core.tracking.landmarks import BLENDSHAPE_NAMES


def save_edits(project: Project, blendshapes: np.ndarray) -> None:
    """Keep ``blendshapes`` float [T,52] (ARKit order, in [0,1]) as the project's edited expression track."""
    blendshapes = np.asarray(blendshapes, np.float32)
    if blendshapes.ndim != 2 or blendshapes.shape[1] != len(BLENDSHAPE_NAMES):
        raise ValueError(f"an expression track is [T,{len(BLENDSHAPE_NAMES)}], got {blendshapes.shape}")
    with project.writing("save edits"):
        save_npz(project.path(EDITS_FILE), {"blendshapes": np.clip(blendshapes, 0.0, 1.0),
                                            "blendshape_names": np.array(BLENDSHAPE_NAMES)})


def load_edits(project: Project, frames: int) -> dict[str, np.ndarray] | None:
    """The edited track as tracking-style arrays (``blendshapes``, ``blendshape_names``), or None when the
    project has none; ProjectError when it does not cover the footage's ``frames`` frames."""
    path = project.path(EDITS_FILE)
    if not path.exists():
        return None
    data = load_npz(path)
    if data is None or "blendshapes" not in data or "blendshape_names" not in data:
        raise damaged(path, "the edited expressions", "not a readable edits file", "edit them again")
    if len(data["blendshapes"]) != frames:
        raise ProjectError(path, f"the edited expressions cover {len(data['blendshapes'])} frames and the footage "
                                 f"{frames}: edit them again or delete the file")
    return data
