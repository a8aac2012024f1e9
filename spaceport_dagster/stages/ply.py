"""The standard INRIA 3D Gaussian splat PLY: binary little endian float32, pre-activation values.

Property order: x y z nx ny nz f_dc_0..2 f_rest_0..(3*K-1) opacity scale_0..2 rot_0..3, where K is the
number of higher-order SH coefficients per colour channel (0, 3, 8 or 15; 15 for the full SH degree 3
layout every viewer expects). f_rest is channel-major: f_rest_{c*K + j}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SH_COEFFS_PER_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15}


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
    data = np.ascontiguousarray(np.concatenate([c.astype("<f4") for c in columns], axis=1))
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in property_names(k)]
    header.append("end_header")
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(data.tobytes())
    return path.stat().st_size


def _parse_header(fh) -> tuple[int, list[tuple[str, str]], int]:
    first = fh.readline()
    if first.strip() != b"ply":
        raise PlyFormatError("not a PLY file (missing 'ply' magic)")
    count = None
    props: list[tuple[str, str]] = []
    fmt = None
    in_vertex = False
    while True:
        line = fh.readline()
        if not line:
            raise PlyFormatError("PLY header has no end_header")
        parts = line.decode("ascii", "replace").split()
        if not parts:
            continue
        if parts[0] == "end_header":
            break
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            in_vertex = parts[1] == "vertex"
            if in_vertex:
                count = int(parts[2])
            elif count is not None:
                raise PlyFormatError("PLY has elements after 'vertex'; only a vertex element is supported")
        elif parts[0] == "property" and in_vertex:
            if parts[1] == "list":
                raise PlyFormatError("PLY vertex has list properties")
            props.append((parts[1], parts[2]))
    if fmt != "binary_little_endian":
        raise PlyFormatError(f"PLY format is {fmt!r}; expected binary_little_endian")
    if count is None:
        raise PlyFormatError("PLY has no vertex element")
    return count, props, fh.tell()


_PLY_TYPES = {
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
}


def read_ply(path: str | Path) -> GaussianCloud:
    """Read a 3DGS PLY (any property order, float or double); raises PlyFormatError when it is not one."""
    path = Path(path)
    with open(path, "rb") as fh:
        count, props, offset = _parse_header(fh)
        try:
            dtype = np.dtype([(name, _PLY_TYPES[kind]) for kind, name in props])
        except KeyError as exc:
            raise PlyFormatError(f"PLY property type {exc.args[0]!r} is not supported") from None
        expected = offset + count * dtype.itemsize
        size = path.stat().st_size
        if size < expected:
            raise PlyFormatError(f"PLY is truncated: {size} bytes, header promises {expected}")
        data = np.fromfile(fh, dtype=dtype, count=count)
    names = set(dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
    required += ["rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [r for r in required if r not in names]
    if missing:
        raise PlyFormatError(f"PLY lacks Gaussian properties: {', '.join(missing)}")
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    if n_rest % 3 or n_rest // 3 not in SH_COEFFS_PER_DEGREE.values():
        raise PlyFormatError(f"PLY has {n_rest} f_rest properties; expected 0, 9, 24 or 45")
    k = n_rest // 3

    def cols(*keys: str) -> np.ndarray:
        return np.stack([data[key].astype(np.float32) for key in keys], axis=1)

    f_rest = cols(*[f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((count, 0), np.float32)
    shN = f_rest.reshape(count, 3, k).transpose(0, 2, 1).copy()
    return GaussianCloud(
        means=cols("x", "y", "z"),
        sh0=cols("f_dc_0", "f_dc_1", "f_dc_2"),
        shN=shN,
        opacities=data["opacity"].astype(np.float32),
        scales=cols("scale_0", "scale_1", "scale_2"),
        quats=cols("rot_0", "rot_1", "rot_2", "rot_3"),
    )
