"""3DGS PLY files: the layout of the reference implementation, which other splat viewers read and write.

One ``vertex`` element; per Gaussian x y z, optional nx ny nz, f_dc_0..2, f_rest_* (channel-major: all of
red's higher SH coefficients, then green's, then blue's), opacity (logit), scale_0..2 (log), rot_0..3 (wxyz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import MediaError
from core.fsutil import atomic_path
from core.render.splats import Splats

_TYPES = {  # PLY scalar type -> numpy, both spellings
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">"}
_BASE = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
         "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def _header(path: Path, data: bytes) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]], int]:
    """Parse the header: (byte order, [(element, count, [(property, numpy type)])], offset of the body)."""
    if not data.startswith(b"ply"):
        raise MediaError(path, "not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise MediaError(path, "truncated PLY header (no 'end_header')")
    body = data.find(b"\n", end) + 1
    if body == 0:
        raise MediaError(path, "truncated PLY header (nothing after 'end_header')")
    order, elements = None, []
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                fmt = words[1] if len(words) > 1 else "?"
                raise MediaError(path, f"PLY format '{fmt}' is not supported (only binary, as 3DGS tools write)")
            order = _FORMATS[words[1]]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) >= 3:
            if words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
            elif len(words) == 3 and words[1] in _TYPES:
                elements[-1][2].append((words[2], _TYPES[words[1]]))
            else:
                raise MediaError(path, f"unreadable PLY header line: {line!r}")
        else:
            raise MediaError(path, f"unreadable PLY header line: {line!r}")
    if order is None:
        raise MediaError(path, "PLY header has no 'format' line")
    return order, elements, body


def read_ply(path: str | Path) -> Splats:
    """Read a 3DGS PLY (any property order, normals optional, SH degree 0-3, float or other numeric types)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MediaError(path, f"cannot read the file ({e.strerror or e})") from e
    order, elements, offset = _header(path, data)
    for name, count, props in elements:
        if any(t == "list" for _, t in props):
            raise MediaError(path, f"PLY element '{name}' has list properties, which 3DGS files never have")
        names = [p for p, _ in props]
        twice = sorted({p for p in names if names.count(p) > 1})
        if twice:
            raise MediaError(path, f"PLY element '{name}' declares {', '.join(twice)} more than once")
        dtype = np.dtype([(p, order + t) for p, t in props])
        if name == "vertex":
            break
        offset += count * dtype.itemsize  # an element before the Gaussians: skip it
    else:
        raise MediaError(path, "PLY has no 'vertex' element (the Gaussians)")
    have = {p for p, _ in props}
    n_rest = sum(p.startswith("f_rest_") for p in have)
    k = n_rest // 3 + 1
    wanted = _BASE + [f"f_rest_{i}" for i in range(n_rest)]
    missing = [p for p in wanted if p not in have]
    if missing:
        raise MediaError(path, f"not a 3DGS PLY: missing properties {', '.join(missing)}")
    if k not in (1, 4, 9, 16) or n_rest != 3 * (k - 1):
        raise MediaError(path, f"{n_rest} f_rest properties do not make an SH degree 0-3 (0, 9, 24 or 45)")
    size = count * dtype.itemsize
    if len(data) - offset < size:
        raise MediaError(path, f"truncated: {count} Gaussians need {size} bytes of data, "
                               f"the file has {max(len(data) - offset, 0)}")
    v = np.frombuffer(data, dtype, count, offset)

    def col(*names: str) -> np.ndarray:  # [N,len(names)] float32 (exact for float32 files)
        return np.stack([v[p] for p in names], axis=-1).astype(np.float32)

    sh = np.empty((count, k, 3), np.float32)
    sh[:, 0] = col("f_dc_0", "f_dc_1", "f_dc_2")
    rest = col(*[f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.empty((count, 0), np.float32)
    sh[:, 1:] = rest.reshape(count, 3, k - 1).transpose(0, 2, 1)  # channel-major -> [N,K-1,3]
    splats = Splats(
        means=col("x", "y", "z"),
        quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
        log_scales=col("scale_0", "scale_1", "scale_2"),
        opacity_logits=v["opacity"].astype(np.float32),
        sh=sh,
    )
    bad = {f: int((~np.isfinite(getattr(splats, f))).sum()) for f in ("means", "quats", "log_scales",
                                                                    "opacity_logits", "sh")}
    bad = {f: n for f, n in bad.items() if n}
    if bad:
        raise MediaError(path, "holds values that are not finite numbers (NaN or infinity, or too large for "
                               f"float32): {', '.join(f'{n} in {f}' for f, n in bad.items())}")
    return splats


def write_ply(path: str | Path, splats: Splats) -> None:
    """Write ``splats`` as the reference 3DGS code does (binary little endian float32, zero normals); atomic."""
    n, k = len(splats), splats.sh.shape[1]
    rest = splats.sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # [N,K-1,3] -> channel-major
    columns = [splats.means, np.zeros((n, 3), np.float32), splats.sh[:, 0], rest,
               splats.opacity_logits[:, None], splats.log_scales, splats.quats]
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(3 * (k - 1))]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    body = np.concatenate(columns, axis=1).astype("<f4")  # [N,P]
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
                       + [f"property float {p}" for p in names] + ["end_header", ""])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(body.tobytes())
