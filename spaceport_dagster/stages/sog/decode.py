"""SOG v2 meta.json + textures -> GaussianCloud (in bundle order), with the meta validated first."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud

from .bundle import check_name
from .format import (
    CODEBOOK_SIZE,
    PALETTE_COLUMNS,
    SH_COEFFS,
    VERSION,
    SogFormatError,
    inv_log_transform,
    logit,
)

PER_SPLAT = ("means", "quats", "scales", "sh0")


def _number_list(value: Any, length: int, what: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != length:
        raise SogFormatError(f"{what} must be a list of {length} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise SogFormatError(f"{what} must hold only numbers")
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise SogFormatError(f"{what} holds non-finite numbers")
    return arr


def _files(section: dict[str, Any], key: str, count: int) -> list[str]:
    files = section.get("files")
    if not isinstance(files, list) or len(files) != count or not all(isinstance(f, str) and f for f in files):
        raise SogFormatError(f"meta.json {key}.files must list {count} file name(s)")
    for name in files:
        check_name(name)
    return files


def validate_meta(meta: Any) -> dict[str, list[str]]:
    """Check meta.json's structure; returns the files each section names (in meta order)."""
    if not isinstance(meta, dict):
        raise SogFormatError("meta.json is not a JSON object")
    if "version" not in meta:
        raise SogFormatError("meta.json has no 'version': this is the deprecated SOGS v1 layout, not SOG v2")
    if meta["version"] != VERSION or isinstance(meta["version"], bool):
        raise SogFormatError(f"meta.json version is {meta['version']!r}; only SOG version {VERSION} is supported")
    count = meta.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise SogFormatError(f"meta.json count must be a positive integer, got {count!r}")
    files: dict[str, list[str]] = {}
    for key, n_files in (("means", 2), ("scales", 1), ("quats", 1), ("sh0", 1)):
        section = meta.get(key)
        if not isinstance(section, dict):
            raise SogFormatError(f"meta.json has no '{key}' section")
        files[key] = _files(section, key, n_files)
    _number_list(meta["means"].get("mins"), 3, "means.mins")
    _number_list(meta["means"].get("maxs"), 3, "means.maxs")
    for key in ("scales", "sh0"):
        _number_list(meta[key].get("codebook"), CODEBOOK_SIZE, f"{key}.codebook")
    shn = meta.get("shN")
    if shn is not None:
        if not isinstance(shn, dict):
            raise SogFormatError("meta.json shN must be an object")
        if shn.get("bands") not in (1, 2, 3) or isinstance(shn.get("bands"), bool):
            raise SogFormatError(f"shN.bands must be 1, 2 or 3, got {shn.get('bands')!r}")
        palette = shn.get("count")
        if not isinstance(palette, int) or isinstance(palette, bool) or not 1 <= palette <= 65536:
            raise SogFormatError(f"shN.count must be an integer in 1..65536, got {palette!r}")
        _number_list(shn.get("codebook"), CODEBOOK_SIZE, "shN.codebook")
        files["shN"] = _files(shn, "shN", 2)
    return files


def _per_splat(images: dict[str, np.ndarray], names: list[str], count: int) -> tuple[int, int]:
    shapes = {name: images[name].shape[:2] for name in names}
    if len(set(shapes.values())) != 1:
        sizes = ", ".join(f"{n} {s[1]}x{s[0]}" for n, s in shapes.items())
        raise SogFormatError(f"per-splat images differ in size: {sizes}")
    height, width = next(iter(shapes.values()))
    if width * height < count:
        raise SogFormatError(f"count {count} is larger than the {width}x{height} images hold ({width * height})")
    return width, height


def decode_arrays(meta: dict[str, Any], images: dict[str, np.ndarray]) -> GaussianCloud:
    """Decode validated `meta` and its (H, W, 4) uint8 `images` (keyed by file name)."""
    files = validate_meta(meta)
    count = int(meta["count"])
    per_splat = [f for key in PER_SPLAT for f in files[key]]
    if "shN" in files:
        per_splat.append(files["shN"][1])
    missing = [f for f in per_splat + files.get("shN", [])[:1] if f not in images]
    if missing:
        raise SogFormatError(f"bundle lacks file(s) named in meta.json: {', '.join(missing)}")
    _per_splat(images, per_splat, count)

    def texels(name: str) -> np.ndarray:
        return images[name].reshape(-1, 4)[:count].astype(np.int64)

    lo, hi = texels(files["means"][0]), texels(files["means"][1])
    mins = np.asarray(meta["means"]["mins"], np.float64)
    maxs = np.asarray(meta["means"]["maxs"], np.float64)
    span = np.where(maxs - mins != 0, maxs - mins, 1.0)
    q = (lo[:, :3] + 256 * hi[:, :3]) / 65535.0
    means = inv_log_transform(mins + span * q)

    quat = texels(files["quats"][0])
    tag = quat[:, 3]
    if ((tag < 252) | (tag > 255)).any():
        bad = int(np.flatnonzero((tag < 252) | (tag > 255))[0])
        raise SogFormatError(f"quats.webp texel {bad} has alpha {int(tag[bad])}; expected 252..255")
    largest = tag - 252
    abc = (quat[:, :3] / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    quats = np.zeros((count, 4), np.float64)
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(quats, keep, abc, axis=1)
    quats[np.arange(count), largest] = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(axis=1)))

    scales_book = np.asarray(meta["scales"]["codebook"], np.float32)
    scales = scales_book[texels(files["scales"][0])[:, :3]]
    sh0_tex = texels(files["sh0"][0])
    sh0 = np.asarray(meta["sh0"]["codebook"], np.float32)[sh0_tex[:, :3]]
    opacities = logit(sh0_tex[:, 3] / 255.0)

    shn = np.zeros((count, 0, 3), np.float32)
    if "shN" in files:
        shn = _decode_shn(meta["shN"], images[files["shN"][0]], texels(files["shN"][1]), count)
    return GaussianCloud(
        means=means.astype(np.float32), sh0=sh0, shN=shn, opacities=opacities.astype(np.float32),
        scales=scales, quats=quats.astype(np.float32),
    )


def _decode_shn(section: dict[str, Any], centroids: np.ndarray, labels_tex: np.ndarray, count: int) -> np.ndarray:
    bands, palette = int(section["bands"]), int(section["count"])
    k = SH_COEFFS[bands]
    height, width = centroids.shape[:2]
    if width != PALETTE_COLUMNS * k:
        raise SogFormatError(f"shN_centroids is {width} wide; {bands} band(s) need {PALETTE_COLUMNS * k}")
    if height * PALETTE_COLUMNS < palette:
        raise SogFormatError(f"shN_centroids holds {height * PALETTE_COLUMNS} centroids; shN.count is {palette}")
    labels = labels_tex[:, 0] + 256 * labels_tex[:, 1]
    if labels.max(initial=0) >= palette:
        bad = int(np.flatnonzero(labels >= palette)[0])
        raise SogFormatError(f"shN label {int(labels[bad])} of splat {bad} is outside the palette of {palette}")
    book = np.asarray(section["codebook"], np.float32)
    row, col = labels // PALETTE_COLUMNS, (labels % PALETTE_COLUMNS) * k
    out = np.empty((count, k, 3), np.float32)
    for j in range(k):
        out[:, j, :] = book[centroids[row, col + j, :3]]
    return out
