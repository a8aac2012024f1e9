"""The 3DGS PLY reader on files other tools write: ASCII, big endian, doubles, reordered, with other elements."""

from __future__ import annotations

import numpy as np
import pytest

from spaceport_dagster.stages.ply import GaussianCloud, PlyFormatError, property_names, read_ply, write_ply


def _cloud(n: int = 5, k: int = 3, seed: int = 0) -> GaussianCloud:
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return GaussianCloud(f(n, 3), f(n, 3), f(n, k, 3), f(n), f(n, 3), f(n, 4))


def _rows(cloud: GaussianCloud) -> np.ndarray:
    """The cloud as the (N, properties) table of the INRIA layout, built independently of write_ply."""
    n, k = len(cloud), cloud.shN.shape[1]
    f_rest = np.stack([cloud.shN[:, j, c] for c in range(3) for j in range(k)], axis=1).reshape(n, 3 * k)
    return np.concatenate([cloud.means, np.zeros((n, 3), np.float32), cloud.sh0, f_rest,
                           cloud.opacities[:, None], cloud.scales, cloud.quats], axis=1)


def _assert_same(a: GaussianCloud, b: GaussianCloud) -> None:
    for field in ("means", "sh0", "shN", "opacities", "scales", "quats"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_writes_the_inria_layout_byte_for_byte(tmp_path):
    cloud = _cloud(4, 15)
    size = write_ply(tmp_path / "c.ply", cloud)
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 4\n"
    header += "".join(f"property float {p}\n" for p in property_names(15)) + "end_header\n"
    expected = header.encode() + _rows(cloud).astype("<f4").tobytes()
    assert (tmp_path / "c.ply").read_bytes() == expected and size == len(expected)
    _assert_same(read_ply(tmp_path / "c.ply"), cloud)


def test_reads_ascii(tmp_path):
    cloud = _cloud(3, 3)
    lines = ["ply", "format ascii 1.0", "comment written by another tool", "element vertex 3"]
    lines += [f"property float {p}" for p in property_names(3)] + ["end_header"]
    lines += [" ".join(repr(float(v)) for v in row) for row in _rows(cloud)]
    (tmp_path / "a.ply").write_text("\n".join(lines) + "\n")
    _assert_same(read_ply(tmp_path / "a.ply"), cloud)


def test_reads_big_endian_doubles_in_another_order_beside_faces(tmp_path):
    cloud = _cloud(6, 15)
    names = property_names(15)
    order = list(reversed(range(len(names))))  # rot_3 first, x last
    header = ["ply", "format binary_big_endian 1.0", "element camera 1", "property float focal",
              "element vertex 6", *[f"property double {names[i]}" for i in order],
              "element face 2", "property list uchar int vertex_indices", "end_header"]
    body = np.float32(1.5).astype(">f4").tobytes() + _rows(cloud)[:, order].astype(">f8").tobytes()
    body += bytes([3]) + np.array([0, 1, 2], ">i4").tobytes() + bytes([4]) + np.array([2, 3, 4, 5], ">i4").tobytes()
    (tmp_path / "b.ply").write_bytes(("\n".join(header) + "\n").encode() + body)
    _assert_same(read_ply(tmp_path / "b.ply"), cloud)


def test_refuses_what_is_not_a_splat(tmp_path):
    path = tmp_path / "x.ply"
    write_ply(path, _cloud(10, 3))
    data = path.read_bytes()
    cases = {
        b"not a ply at all\n": "unreadable PLY",
        b"ply\nformat ascii 1.0\nend_header\n": "no vertex element",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n": "lacks Gaussian properties: y, z",
        data[: len(data) - 10]: "unreadable PLY: .*early end-of-file",
        data.replace(b"property float f_rest_8\n", b""): "8 f_rest properties",
        data.replace(b"f_rest_8\n", b"f_rest_9\n"): "lacks f_rest_8",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\n"
        + "".join(f"property float {p}\n" for p in property_names(0)[1:]).encode()
        + b"end_header\n1 0 " + b"0 " * 16 + b"\n": "lists, not scalars: x",
    }
    for content, message in cases.items():
        path.write_bytes(content)
        with pytest.raises(PlyFormatError, match=message):
            read_ply(path)
