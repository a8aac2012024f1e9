"""The standard INRIA 3D Gaussian splat PLY: binary little endian float32, pre-activation values.

Property order: x y z nx ny nz f_dc_0..2 f_rest_0..(3*K-1) opacity scale_0..2 rot_0..3, where K is the
number of higher-order SH coefficients per colour channel (0, 3, 8 or 15; 15 for the full SH degree 3
layout every viewer expects). f_rest is channel-major: f_rest_{c*K + j}.

Parsing and serialising are plyfile's, so a splat written by another tool reads here whatever its encoding
(ASCII, big or little endian), property order, numeric types or other elements (faces, cameras, ...).
We always write the layout above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

SH_COEFFS_PER_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15}
_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]


class PlyFormatError(ValueError):
    """The file is not a 3DGS PLY this project can read."""


@dataclass
class GaussianCloud:
    """Pre-activation Gaussian parameters, one row per splat (float32)."""

    means: np.ndarray  # (N, 3)
    sh0: np.ndarray  # (N, 3) f_dc
    shN: np.ndarray  # (N, K, 3) higher-order SH, coefficient-major like gsplat's sh tensor
    opacities: np.ndarray  # (N,) logit
    scales: np.ndarray  # (N, 3) log scale
    quats: np.ndarray  # (N, 4) w x y z, not necessarily normalised

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        for name, arr, shape in (
            ("means", self.means, (n, 3)),
            ("sh0", self.sh0, (n, 3)),
            ("opacities", self.opacities, (n,)),
            ("scales", self.scales, (n, 3)),
            ("quats", self.quats, (n, 4)),
        ):
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"shN has shape {self.shN.shape}, expected ({n}, K, 3)")
        if self.shN.shape[1] not in SH_COEFFS_PER_DEGREE.values():
            raise ValueError(f"shN has {self.shN.shape[1]} coefficients per channel, expected 0, 3, 8 or 15")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return {v: k for k, v in SH_COEFFS_PER_DEGREE.items()}[self.shN.shape[1]]

    def all_finite(self) -> bool:
        return all(
            bool(np.isfinite(a).all())
            for a in (self.means, self.sh0, self.shN, self.opacities, self.scales, self.quats)
        )


def property_names(sh_coeffs: int = 15) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * sh_coeffs)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_ply(path: str | Path, cloud: GaussianCloud) -> int:
    """Write `cloud` as a binary little endian PLY; returns the file size in bytes."""
    n = len(cloud)
    k = cloud.shN.shape[1]
    # f_rest is channel-major: (N, K, 3) -> (N, 3, K) -> (N, 3K)
    f_rest = np.transpose(cloud.shN, (0, 2, 1)).reshape(n, 3 * k)
    columns = [
        cloud.means,
        np.zeros((n, 3), np.float32),
        cloud.sh0,
        f_rest,
        cloud.opacities.reshape(n, 1),
        cloud.scales,
        cloud.quats,
    ]
    table = np.ascontiguousarray(np.concatenate([c.astype("<f4") for c in columns], axis=1))
    # One row of the float table is one vertex record: view it as plyfile's structured array, no copy.
    vertices = table.view(np.dtype([(name, "<f4") for name in property_names(k)])).reshape(n)
    path = Path(path)
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(str(path))
    return path.stat().st_size


def read_ply(path: str | Path) -> GaussianCloud:
    """Read the vertex element of any PLY holding 3DGS properties; raises PlyFormatError when it has none."""
    path = Path(path)
    try:
        ply = PlyData.read(str(path))
    except PlyParseError as exc:
        raise PlyFormatError(f"unreadable PLY: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # plyfile's own errors for a malformed body or header
        raise PlyFormatError(f"unreadable PLY: {exc}") from exc
    if "vertex" not in ply:
        raise PlyFormatError("PLY has no vertex element")
    data = ply["vertex"].data
    count = len(data)
    names = set(data.dtype.names or ())
    missing = [r for r in _REQUIRED if r not in names]
    if missing:
        raise PlyFormatError(f"PLY lacks Gaussian properties: {', '.join(missing)}")
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    if n_rest % 3 or n_rest // 3 not in SH_COEFFS_PER_DEGREE.values():
        raise PlyFormatError(f"PLY has {n_rest} f_rest properties; expected 0, 9, 24 or 45")
    k = n_rest // 3
    rest_missing = [f"f_rest_{i}" for i in range(n_rest) if f"f_rest_{i}" not in names]
    if rest_missing:
        raise PlyFormatError(f"PLY f_rest properties are not numbered 0..{n_rest - 1}: lacks {', '.join(rest_missing)}")
    list_props = [r for r in _REQUIRED + [f"f_rest_{i}" for i in range(n_rest)] if data.dtype[r].kind == "O"]
    if list_props:
        raise PlyFormatError(f"PLY Gaussian properties are lists, not scalars: {', '.join(list_props)}")

    def cols(*keys: str) -> np.ndarray:
        return np.stack([np.asarray(data[key], dtype=np.float32) for key in keys], axis=1)

    f_rest = cols(*[f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((count, 0), np.float32)
    shN = f_rest.reshape(count, 3, k).transpose(0, 2, 1).copy()
    return GaussianCloud(
        means=cols("x", "y", "z"),
        sh0=cols("f_dc_0", "f_dc_1", "f_dc_2"),
        shN=shN,
        opacities=np.array(data["opacity"], dtype=np.float32),
        scales=cols("scale_0", "scale_1", "scale_2"),
        quats=cols("rot_0", "rot_1", "rot_2", "rot_3"),
    )


def ply_header(count: int, names: list[str]) -> bytes:
    """The header write_ply writes: binary little endian, one float property per name."""
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {count}"]
    lines += [f"property float {name}" for name in names] + ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def read_float_table(path: str | Path) -> tuple[list[str], np.ndarray] | None:
    """A PLY in write_ply's layout (one vertex element of little endian floats) as its property names and an
    (N, P) float32 memory map, without a copy; None for any other layout (read_ply reads those)."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    end = head.find(b"end_header\n")
    if end < 0:
        return None
    lines = head[:end].decode("ascii", "replace").splitlines()
    if len(lines) < 3 or lines[0] != "ply" or lines[1] != "format binary_little_endian 1.0":
        return None
    elements = [line for line in lines if line.startswith("element ")]
    if len(elements) != 1 or not elements[0].startswith("element vertex "):
        return None
    count = int(elements[0].split()[2])
    props = [line.split() for line in lines if line.startswith("property ")]
    if not props or any(len(p) != 3 or p[1] not in ("float", "float32") for p in props):
        return None
    names = [p[2] for p in props]
    offset = end + len(b"end_header\n")
    if Path(path).stat().st_size != offset + 4 * count * len(names):
        return None
    if count == 0:
        return names, np.zeros((0, len(names)), np.float32)
    return names, np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=(count, len(names)))
