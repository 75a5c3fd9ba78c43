"""The 3D face template: MediaPipe's 468-vertex canonical face mesh, read from the geometry metadata
inside face_landmarker.task (in place of the licence-gated Basel Face Model), and landmark groups.

Landmark i < 468 of MediaPipe's 478 is vertex i of this mesh; 468–477 are the irises.
"""

from __future__ import annotations

import functools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.models import FACE_LANDMARKER, ModelError, resolve_model

GEOMETRY_ENTRY = "geometry_pipeline_metadata_landmarks.binarypb"


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray        # float32 [468,3] centimetres; +x right (subject's left), +y up, +z toward the viewer
    uv: np.ndarray              # float32 [468,2] texture coordinates
    triangles: np.ndarray       # int32 [F,3] vertex ids
    procrustes_ids: np.ndarray  # int32 [P] landmarks MediaPipe weights for rigid alignment
    procrustes_weights: np.ndarray  # float32 [P]


def _ids(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


# Landmark groups, in MediaPipe's FaceLandmarksConnections order (FACE_OVAL is a closed polygon).
LEFT_EYE = _ids([263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398])
RIGHT_EYE = _ids([33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173])
LEFT_BROW = _ids([276, 283, 282, 295, 285, 300, 293, 334, 296, 336])
RIGHT_BROW = _ids([46, 53, 52, 65, 55, 70, 63, 105, 66, 107])
LIPS = _ids([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415])
FACE_OVAL = _ids([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
LEFT_IRIS = _ids([474, 475, 476, 477])
RIGHT_IRIS = _ids([469, 470, 471, 472])
NOSE_TIP = 1
# MediaPipe's Procrustes basis (geometry metadata of face_landmarker.task): the landmarks it trusts to move
# with the skull (nose bridge, forehead, cheekbones, eye corners). tests/test_template.py checks it.
RIGID_LANDMARKS = _ids([4, 6, 10, 33, 54, 67, 117, 119, 121, 127, 129, 132, 133, 136, 143, 147, 198, 205,
                        263, 284, 297, 346, 348, 350, 356, 358, 361, 362, 365, 372, 376, 420, 425])


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message (wire format, no schema needed)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _packed_varints(value: bytes) -> list[int]:
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def parse_geometry_metadata(blob: bytes) -> Mesh:
    """GeometryPipelineMetadata {canonical_mesh=1 Mesh3d{vertex_buffer=3 (x,y,z,u,v)*, index_buffer=4},
    procrustes_landmark_basis=2 {landmark_id=1, weight=2}}."""
    verts: list[float] = []
    index: list[int] = []
    ids: list[int] = []
    weights: list[float] = []
    for field, wire, value in _fields(blob):
        if field == 1 and wire == 2:
            for f, w, v in _fields(value):
                if f == 3:
                    verts.extend(struct.unpack(f"<{len(v) // 4}f", v) if w == 2 else struct.unpack("<f", v))
                elif f == 4:
                    index.extend(_packed_varints(v) if w == 2 else [v])
        elif field == 2 and wire == 2:
            entry = {f: v for f, _, v in _fields(value)}
            ids.append(int(entry.get(1, 0)))
            weights.append(struct.unpack("<f", entry[2])[0] if 2 in entry else 0.0)
    pt = np.asarray(verts, np.float32).reshape(-1, 5)  # [468, x y z u v]
    return Mesh(vertices=pt[:, :3].copy(), uv=pt[:, 3:].copy(),
                triangles=np.asarray(index, np.int32).reshape(-1, 3),
                procrustes_ids=np.asarray(ids, np.int32), procrustes_weights=np.asarray(weights, np.float32))


@functools.lru_cache(maxsize=None)
def canonical_mesh(task_path: str | None = None) -> Mesh:
    """The canonical mesh from face_landmarker.task (resolved as core.models does when not given)."""
    path = Path(task_path) if task_path else resolve_model(FACE_LANDMARKER)
    try:
        with zipfile.ZipFile(path) as z:
            mesh = parse_geometry_metadata(z.read(GEOMETRY_ENTRY))
    except (zipfile.BadZipFile, KeyError) as e:
        raise ModelError(f"{path}: no canonical face mesh inside ({e})") from None
    if mesh.vertices.shape != (468, 3):
        raise ModelError(f"{path}: canonical mesh has {len(mesh.vertices)} vertices, expected 468")
    return mesh

