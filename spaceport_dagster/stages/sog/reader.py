"""Read a SOG v2 bundle (`.sog` ZIP, a folder holding meta.json, or meta.json itself) into a GaussianCloud."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud, write_ply

from . import bundle, webp
from .decode import decode_arrays, validate_meta
from .format import SogFormatError


@dataclass
class SogBundle:
    meta: dict[str, Any]
    files: dict[str, bytes]  # every file meta.json names, by name


def load_bundle(path: str | Path, max_bytes: int = bundle.DEFAULT_MAX_BYTES) -> SogBundle:
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    if not path.is_file():
        raise SogFormatError(f"no SOG bundle at {path}")
    if path.name == "meta.json":
        meta = bundle.parse_meta(path.read_bytes())
        names = [n for names in validate_meta(meta).values() for n in names]
        return SogBundle(meta, bundle.read_folder(path.parent, names, max_bytes))
    files = bundle.read_zip(path.read_bytes(), max_bytes)
    if "meta.json" not in files:
        raise SogFormatError(f"{path.name} has no meta.json at its root")
    meta = bundle.parse_meta(files["meta.json"])
    names = [n for names in validate_meta(meta).values() for n in names]
    missing = [n for n in names if n not in files]
    if missing:
        raise SogFormatError(f"{path.name} lacks file(s) named in meta.json: {', '.join(missing)}")
    return SogBundle(meta, {n: files[n] for n in names})


def decode_bundle(sog: SogBundle) -> GaussianCloud:
    return decode_arrays(sog.meta, texel_arrays(sog))


def read_sog(path: str | Path, max_bytes: int = bundle.DEFAULT_MAX_BYTES) -> GaussianCloud:
    """Decode a bundle into pre-activation Gaussians, in the bundle's (Morton) order."""
    return decode_bundle(load_bundle(path, max_bytes))


def sog_to_ply(path: str | Path, ply_path: str | Path) -> int:
    """Decode a bundle and write it as a standard 3DGS PLY; returns the PLY's size in bytes."""
    cloud = read_sog(path)
    return write_ply(ply_path, cloud)


def texel_arrays(sog: SogBundle) -> dict[str, np.ndarray]:
    """Decoded pixels of every image in the bundle (for byte-level comparisons)."""
    return {name: webp.decode(data, name) for name, data in sog.files.items()}

