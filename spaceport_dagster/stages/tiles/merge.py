"""Merge tiles into one splat: each tile keeps the Gaussians whose centres lie in its core cell.

The core cells cover the plane without overlap, so every kept Gaussian belongs to exactly one tile. At a seam
both tiles trained on the same photos over the margin, so their Gaussians meet where the photos put them. A
Gaussian whose footprint (3 sigma of its largest axis on the ground) reaches past its tile's expanded cell
was fitted where that tile had neither photos nor SfM points of the neighbour's ground, and would lie over
the neighbour's own Gaussians there: `seam="trim"` drops those, `seam="keep"` keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud

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
