"""3DGS PLY read/write: exact round trips, files laid out as other tools write them, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import MediaError
from core.render.api import rasterize
from core.render.ply import read_ply, write_ply
from core.render.splats import Splats

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def assert_same_bits(a: Splats, b: Splats) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path, degree):
    splats = Splats.random(257, seed=degree, sh_degree=degree)
    splats.means[0] = [np.float32(1e-38), -0.0, np.float32(3.4e38)]  # denormal-adjacent, signed zero, huge
    path = tmp_path / "avatar.ply"
    write_ply(path, splats)
    back = read_ply(path)
    assert back.sh_degree == degree and len(back) == 257
    assert_same_bits(splats, back)
    assert not list(tmp_path.glob(".*.part"))  # the atomic write left no temporary file


def test_written_header_is_the_reference_layout(tmp_path):
    path = tmp_path / "a.ply"
    write_ply(path, Splats.random(3, seed=0, sh_degree=1))
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    props = [line.split()[2] for line in header if line.startswith("property float ")]
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    assert props == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(9)]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert len(data) - end == 3 * len(props) * 4  # float32 little endian, nothing else


def _foreign_ply(path, splats: Splats, names: list[str], extra_element: bool, big_endian: bool) -> None:
    """Write ``splats`` the way another tool might: properties in ``names``' order, an unrelated extra one."""
    n, k = len(splats), splats.sh.shape[1]
    rest = splats.sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)  # channel-major
    values = {"x": splats.means[:, 0], "y": splats.means[:, 1], "z": splats.means[:, 2],
              "opacity": splats.opacity_logits, "red": np.full(n, 7, np.uint8)}
    values |= {f"f_dc_{i}": splats.sh[:, 0, i] for i in range(3)}
    values |= {f"f_rest_{i}": rest[:, i] for i in range(3 * (k - 1))}
    values |= {f"scale_{i}": splats.log_scales[:, i] for i in range(3)}
    values |= {f"rot_{i}": splats.quats[:, i] for i in range(4)}
    order = ">" if big_endian else "<"
    dtype = np.dtype([(p, "u1" if p == "red" else order + "f4") for p in names])
    body = np.empty(n, dtype)
    for p in names:
        body[p] = values[p]
    lines = ["ply", f"format binary_{'big' if big_endian else 'little'}_endian 1.0", "comment another viewer"]
    if extra_element:
        lines += ["element camera 1", "property float fov"]
    lines += [f"element vertex {n}"]
    lines += [f"property {'uchar' if p == 'red' else 'float'} {p}" for p in names] + ["end_header", ""]
    prefix = np.array(0.7, order + "f4").tobytes() if extra_element else b""
    path.write_bytes("\n".join(lines).encode("ascii") + prefix + body.tobytes())


@pytest.mark.parametrize("degree", [0, 3])
def test_reads_other_property_orders_without_normals(tmp_path, degree):
    """Any property order, no normals, an extra uchar property; degree 3 with an element before the
    Gaussians, degree 0 big endian."""
    splats = Splats.random(50, seed=1, sh_degree=degree)
    n_rest = 3 * ((degree + 1) ** 2 - 1)
    names = ([f"rot_{i}" for i in (3, 1, 0, 2)] + ["red", "opacity", "z", "x", "y"]
             + [f"f_rest_{i}" for i in reversed(range(n_rest))]
             + ["scale_2", "scale_0", "scale_1", "f_dc_2", "f_dc_0", "f_dc_1"])
    path = tmp_path / "foreign.ply"
    _foreign_ply(path, splats, names, extra_element=degree == 3, big_endian=degree == 0)
    assert_same_bits(splats, read_ply(path))


def test_written_and_read_back_renders_identically(tmp_path):
    splats = Splats.random(200, seed=2, sh_degree=2)
    splats.log_scales += np.float32(np.log(4.0))  # fill a small image
    path = tmp_path / "scene.ply"
    write_ply(path, splats)
    back = read_ply(path)
    camera = splats.default_camera(64, 48)
    background = torch.tensor([0.1, 0.2, 0.3])
    a = rasterize(**splats.activated(), camera=camera, background=background, backend="cpu")
    b = rasterize(**back.activated(), camera=camera, background=background, backend="cpu")
    assert a.rgb.abs().sum() > 0
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.alpha, b.alpha) and torch.equal(a.depth, b.depth)
    # the GL renderer's half of this check: tests/test_render_gl.py::test_ply_round_trip_renders_identically


def _bad(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MediaError) as info:
        read_ply(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_bad_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.ply"
    write_ply(good, Splats.random(10, seed=0, sh_degree=1))
    data = good.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")

    assert "not a PLY file" in _bad(tmp_path, "notes.ply", b"hello, this is a text file\n")
    assert "truncated" in _bad(tmp_path, "cut.ply", data[: end + 100])
    assert "truncated PLY header" in _bad(tmp_path, "cut_header.ply", data[:40])
    ascii_file = data[:end].replace(b"binary_little_endian", b"ascii") + b"0 0 0\n"
    assert "ascii" in _bad(tmp_path, "text.ply", ascii_file)
    no_opacity = data[:end].replace(b"property float opacity\n", b"property float other\n") + data[end:]
    assert "missing properties opacity" in _bad(tmp_path, "no_opacity.ply", no_opacity)
    mesh = b"ply\nformat binary_little_endian 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
    assert "list properties" in _bad(tmp_path, "mesh.ply", mesh)
    odd_rest = data[:end].replace(b"property float f_rest_8\n", b"property float unused\n") + data[end:]
    assert "8 f_rest properties" in _bad(tmp_path, "odd_rest.ply", odd_rest)
    missing = tmp_path / "nowhere.ply"
    with pytest.raises(MediaError, match="nowhere.ply: cannot read the file"):
        read_ply(missing)
