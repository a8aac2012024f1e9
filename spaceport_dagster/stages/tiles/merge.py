"""Merge tiles into one splat: each tile keeps the Gaussians whose centres lie in its core cell.

The core cells cover the plane without overlap, so every kept Gaussian belongs to exactly one tile. At a seam
both tiles trained on the same photos over the margin, so their Gaussians meet where the photos put them. A
Gaussian whose footprint (3 sigma of its largest axis on the ground) reaches past its tile's expanded cell
was fitted where that tile had neither photos nor SfM points of the neighbour's ground, and would lie over
the neighbour's own Gaussians there: `seam="trim"` drops those, `seam="keep"` keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud, ply_header, read_float_table, read_ply, write_ply

from .spec import Cell, TileSpec

SIGMAS = 3.0


@dataclass
class TileMerge:
    index: int
    trained: int  # Gaussians the tile trained
    kept: int
    outside_core: int  # dropped: centre outside the core cell
    seam_trimmed: int  # dropped: footprint past the expanded cell


@dataclass
class MergeStats:
    tiles: list[TileMerge] = field(default_factory=list)

    @property
    def gaussians(self) -> int:
        return sum(t.kept for t in self.tiles)


def reaches_past(means: np.ndarray, radius: np.ndarray, cell: Cell) -> np.ndarray:
    """(N,) bool: the Gaussians whose ground footprint (centre +- radius) crosses a closed side of `cell`."""
    out = np.zeros(len(means), dtype=bool)
    for axis, (lo, hi) in enumerate(((cell.xmin, cell.xmax), (cell.ymin, cell.ymax))):
        if lo is not None:
            out |= means[:, axis] - radius < lo
        if hi is not None:
            out |= means[:, axis] + radius > hi
    return out


def tile_keep_mask(cloud: GaussianCloud, tile: TileSpec, seam: Literal["trim", "keep"]) -> tuple[np.ndarray, int]:
    """The Gaussians of `cloud` that `tile` contributes, and how many of its core ones the seam rule trims."""
    core = tile.core.contains(cloud.means)
    if seam == "keep":
        return core, 0
    radius = SIGMAS * np.exp(cloud.scales.max(axis=1))
    past = reaches_past(cloud.means, radius, tile.expanded)
    keep = core & ~past
    return keep, int((core & past).sum())


def merge_clouds(clouds: list[GaussianCloud], tiles: list[TileSpec],
                 seam: Literal["trim", "keep"] = "trim") -> tuple[GaussianCloud, MergeStats]:
    if len(clouds) != len(tiles) or not clouds:
        raise ValueError(f"{len(clouds)} tile splats for {len(tiles)} tiles")
    if seam not in ("trim", "keep"):
        raise ValueError(f"seam must be 'trim' or 'keep', not {seam!r}")
    degrees = {c.shN.shape[1] for c in clouds}
    if len(degrees) > 1:
        raise ValueError(f"the tiles were trained with different SH degrees ({sorted(degrees)} coefficients); "
                         "train every tile with the same config")
    stats = MergeStats()
    parts = []
    for cloud, tile in zip(clouds, tiles, strict=True):
        keep, trimmed = tile_keep_mask(cloud, tile, seam)
        kept = int(keep.sum())
        stats.tiles.append(TileMerge(tile.index, len(cloud), kept, len(cloud) - kept - trimmed, trimmed))
        parts.append(keep)
    merged = GaussianCloud(*(np.concatenate([getattr(c, name)[m] for c, m in zip(clouds, parts, strict=True)])
                             for name in ("means", "sh0", "shN", "opacities", "scales", "quats")))
    return merged, stats


def _table_keep(table: np.ndarray, names: list[str], tile: TileSpec, seam: str) -> tuple[np.ndarray, int]:
    """tile_keep_mask on a PLY's float table (x, y and the log scales read as columns)."""
    xy = np.asarray(table[:, [names.index("x"), names.index("y")]])
    core = tile.core.contains(xy)
    if seam == "keep":
        return core, 0
    scales = np.asarray(table[:, [names.index(f"scale_{i}") for i in range(3)]])
    past = reaches_past(xy, SIGMAS * np.exp(scales.max(axis=1)), tile.expanded)
    return core & ~past, int((core & past).sum())


def merge_files(tiles: list[tuple[TileSpec, Path]], output: Path, seam: Literal["trim", "keep"] = "trim",
                chunk_rows: int = 1 << 20) -> tuple[MergeStats, int]:
    """Merge the tiles' PLYs into `output`; (the figures, bytes written). The merge stage and
    benchmarks/tile_merge.py time exactly this. PLYs in write_ply's layout (every tile of ours) are merged as
    raw float rows, streamed in chunks (I/O bound: 5M Gaussians are 1.2 GB); others are read and written whole."""
    tables = [read_float_table(path) for _, path in tiles]
    names = tables[0][0] if tables[0] else None
    if names is None or any(t is None or t[0] != names for t in tables):
        clouds = [read_ply(path) for _, path in tiles]
        merged, stats = merge_clouds(clouds, [spec for spec, _ in tiles], seam)
        return stats, write_ply(output, merged)
    if seam not in ("trim", "keep"):
        raise ValueError(f"seam must be 'trim' or 'keep', not {seam!r}")
    stats = MergeStats()
    masks = []
    for (spec, _), (_, table) in zip(tiles, tables, strict=True):  # type: ignore[misc]
        keep = np.zeros(len(table), dtype=bool)
        trimmed = 0
        for start in range(0, len(table), chunk_rows):
            part, cut = _table_keep(table[start:start + chunk_rows], names, spec, seam)
            keep[start:start + chunk_rows] = part
            trimmed += cut
        kept = int(keep.sum())
        stats.tiles.append(TileMerge(spec.index, len(table), kept, len(table) - kept - trimmed, trimmed))
        masks.append(keep)
    with open(output, "wb") as fh:
        fh.write(ply_header(stats.gaussians, names))
        for (_, table), keep in zip(tables, masks, strict=True):  # type: ignore[misc]
            for start in range(0, len(table), chunk_rows):
                np.ascontiguousarray(table[start:start + chunk_rows][keep[start:start + chunk_rows]]).tofile(fh)
    return stats, output.stat().st_size
