"""Where the avatar is trained and rendered: a square crop around the face in each frame, its camera, and the
way back into the full frame.

The crop's side is fixed for the clip (the largest face, with a margin), so a render's pixel size does not
change from frame to frame; its centre follows the face. Rendering the crop instead of the whole frame is
what makes a CPU draft affordable: 256² pixels whatever the footage's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.avatar.gaussians import frame_camera
from core.render.camera import Camera
from core.tracking.landmarks import EXPRESSION_BLENDSHAPES, EXPRESSION_COLUMNS
from core.tracking.template import FACE_OVAL


@dataclass(frozen=True)
class FaceCrops:
    """Per frame, the square of the footage the avatar sees: its top-left corner and a side shared by all."""

    corners: np.ndarray   # float64 [T,2] x0, y0 in footage pixels
    side: float           # footage pixels
    size: int             # the crop's pixels per side (the render's resolution)

    @property
    def scale(self) -> float:
        """Crop pixels per footage pixel."""
        return self.size / self.side

    def affine(self, i: int) -> np.ndarray:
        """float64 [2,3]: footage pixel indices -> crop pixel indices of frame i, for OpenCV (which puts pixel
        centres on integers; the camera and the landmarks put them at +0.5)."""
        k = self.scale
        x0, y0 = self.corners[i]
        return np.array([[k, 0.0, k * (0.5 - x0) - 0.5], [0.0, k, k * (0.5 - y0) - 0.5]])

    def camera(self, i: int, rot: np.ndarray, trans: np.ndarray, focal: float, cx: float, cy: float) -> Camera:
        """The crop's camera for frame i under head pose rot [3,3], trans [3] and the footage's intrinsics."""
        k = self.scale
        x0, y0 = self.corners[i]
        return frame_camera(rot, trans, focal * k, (cx - x0) * k, (cy - y0) * k, self.size, self.size)

    def crop(self, frame: np.ndarray, i: int) -> np.ndarray:
        """uint8 [S,S,3]: frame i's crop (area-averaged when shrinking, edge pixels repeated off the frame)."""
        flags = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        return cv2.warpAffine(frame, self.affine(i), (self.size, self.size), flags=flags,
                              borderMode=cv2.BORDER_REPLICATE)

    def to_crop(self, points: np.ndarray, i: int) -> np.ndarray:
        """Footage pixel coordinates [...,2] -> frame i's crop pixel coordinates."""
        return (points - self.corners[i]) * self.scale

    def paste(self, image: np.ndarray, i: int, frame_size: tuple[int, int]) -> np.ndarray:
        """float32 [H,W,C]: a crop-sized image [S,S,C] placed back over frame i of ``frame_size`` (W, H); zero
        outside the crop."""
        w, h = frame_size
        out = cv2.warpAffine(image.astype(np.float32), self.affine(i), (w, h),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        return out.reshape(h, w, -1)


def face_crops(landmarks: np.ndarray, size: int, margin: float = 1.5) -> FaceCrops:
    """Crops of ``size``² around the face oval of each frame's landmarks [T,478,2]: centred on the oval's box,
    ``margin`` times the largest oval extent of the clip on a side (room for the portrait mask's feather)."""
    oval = landmarks[:, FACE_OVAL]                                   # [T,36,2]
    lo, hi = oval.min(axis=1), oval.max(axis=1)                      # [T,2]
    side = float(margin * (hi - lo).max())
    return FaceCrops(((lo + hi) / 2 - side / 2).astype(np.float64), side, int(size))


def expression_of(blendshapes: np.ndarray) -> np.ndarray:
    """float32 [...,E]: the EXPRESSION_BLENDSHAPES coefficients of blendshapes [...,52] in the tracking's order."""
    return np.asarray(blendshapes[..., EXPRESSION_COLUMNS], np.float32)


def expression(tracking: dict[str, np.ndarray]) -> np.ndarray:
    """float32 [T,E]: the tracked coefficients of EXPRESSION_BLENDSHAPES."""
    names = [str(n) for n in tracking["blendshape_names"]]
    return tracking["blendshapes"][:, [names.index(n) for n in EXPRESSION_BLENDSHAPES]].astype(np.float32)


@dataclass(frozen=True)
class FootageViews:
    """Each frame of the tracked footage as the avatar sees it: its face crop and the crop's camera under the
    stabilised head pose, its landmarks and its tracked expression. Training and driving read the same."""

    crops: FaceCrops
    landmarks: np.ndarray                   # float [T,478,2] footage px
    rot: np.ndarray                         # [T,3,3] stabilised head pose
    trans: np.ndarray                       # [T,3]
    intrinsics: tuple[float, float, float]  # focal, cx, cy (footage px)
    expr: np.ndarray                        # float32 [T,E] the expression blendshapes
    valid: np.ndarray                       # bool [T] a face in view (tracking's valid): only these are rendered

    @classmethod
    def from_tracking(cls, tracking: dict[str, np.ndarray], size: int, margin: float) -> "FootageViews":
        landmarks = tracking["landmarks"]
        return cls(face_crops(landmarks, size, margin), landmarks, tracking["rot"], tracking["trans"],
                   (float(tracking["focal"]), float(tracking["cx"]), float(tracking["cy"])), expression(tracking),
                   tracking["valid"].astype(bool))

    def __len__(self) -> int:
        return len(self.landmarks)

    def camera(self, i: int) -> Camera:
        """The camera of frame i's crop."""
        return self.crops.camera(i, self.rot[i], self.trans[i], *self.intrinsics)
