"""Partition a reconstruction's ground plane into K tiles, and choose K.

The cells come from recursive weighted median splits (a k-d split) of the SfM points' ground positions, each
point weighted by its track length: the number of photos whose footprint holds it. A cell's weight is then
about the photo pixels spent on it, so the tiles get similar training work where the survey is dense and
grow where it is sparse. Each split cuts the longer side of its region, so K=4 is a 2x2 grid on a square
site and 4 strips along a corridor.

A photo trains a tile when at least `min_view_fraction` of the SfM points it observed (its footprint on the
ground, occlusion included) lie in the tile's expanded cell. Test views follow the global rule (every
`test_every`-th registered image by name, `stages/evaluation.py`) and train no tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spaceport_dagster.stages.colmap_io import Model
from spaceport_dagster.stages.evaluation import split_indices

from .spec import Cell, TileSpec

MAX_TILES = 64


@dataclass
class TileOptions:
    # the expanded cell grows each side by this many photo footprints (the median ground extent of a photo's
    # observed SfM points): a photo that sees the core's edge then shows little ground the tile has no points for
    margin: float = 0.5
    min_view_fraction: float = 0.5  # share of a photo's observed points in the expanded cell for it to train there
    test_every: int = 8
    max_long_side: int = 1600  # the training resolution (train preset), for the pixel budget

    def __post_init__(self) -> None:
        if not 0 <= self.margin <= 4:
            raise ValueError(f"tile margin must be within 0..4 photo footprints, not {self.margin}")
        if not 0 < self.min_view_fraction <= 1:
            raise ValueError(f"min_view_fraction must be within (0, 1], not {self.min_view_fraction}")


@dataclass
class Footprints:
    """Per registered image (sorted by name): its name, training megapixels and observed points' ground xy."""

    names: list[str]
    megapixels: np.ndarray  # (I,)
    observed_xy: list[np.ndarray]  # (M_i, 2) each
    test: set[int]

    @classmethod
    def of(cls, model: Model, test_every: int, max_long_side: int) -> Footprints:
        images = sorted(model.images.values(), key=lambda im: im.name)
        order = np.argsort(model.points.ids)
        sorted_ids = model.points.ids[order]
        names, mp, xy = [], [], []
        for im in images:
            cam = model.cameras[im.camera_id]
            scale = min(1.0, max_long_side / max(cam.width, cam.height)) if max_long_side > 0 else 1.0
            mp.append(cam.width * cam.height * scale * scale / 1e6)
            ids = im.point3D_ids[im.point3D_ids >= 0]
            found = np.searchsorted(sorted_ids, ids)
            found = np.minimum(found, len(sorted_ids) - 1)
            known = sorted_ids[found] == ids
            xy.append(model.points.xyz[order[found[known]], :2])
            names.append(im.name)
        _, test = split_indices(len(images), test_every)
        return cls(names, np.asarray(mp), xy, set(test))

    def median_extent(self) -> tuple[float, float]:
        """The median ground extent of one photo (x, y), from the 5th to the 95th percentile of its points."""
        spans = [np.percentile(xy, 95, axis=0) - np.percentile(xy, 5, axis=0) for xy in self.observed_xy if len(xy) >= 10]
        if not spans:
            return 0.0, 0.0
        median = np.median(np.stack(spans), axis=0)
        return float(median[0]), float(median[1])


def _cut(xy: np.ndarray, weights: np.ndarray, k: int, region: Cell) -> list[Cell]:
    if k == 1:
        return [region]
    inside = region.contains(xy)
    pts, w = xy[inside], weights[inside]
    if len(pts) < 2 * k:
        raise ValueError(f"a region holds {len(pts)} SfM points, too few to split into {k} tiles")
    lo, hi = np.percentile(pts, [1, 99], axis=0)
    axis = int(np.argmax(hi - lo))
    order = np.argsort(pts[:, axis], kind="stable")
    cumulative = np.cumsum(w[order])
    left = k // 2
    at = int(np.searchsorted(cumulative, cumulative[-1] * left / k))
    at = min(max(at, 1), len(order) - 1)
    value = float(0.5 * (pts[order[at - 1], axis] + pts[order[at], axis]))
    first, second = region.split(axis, value)
    return _cut(xy, weights, left, first) + _cut(xy, weights, k - left, second)


def partition(model: Model, k: int, options: TileOptions) -> list[TileSpec]:
    """K tiles of `model`; ValueError when a tile would have no training photo."""
    if not 1 <= k <= MAX_TILES:
        raise ValueError(f"tile count must be within 1..{MAX_TILES}, not {k}")
    xy = model.points.xyz[:, :2]
    weights = np.maximum(model.points.track_lengths.astype(np.float64), 1.0)
    cells = _cut(xy, weights, k, Cell())
    foot = Footprints.of(model, options.test_every, options.max_long_side)
    fx, fy = foot.median_extent()
    tiles = []
    for index, core in enumerate(cells, start=1):
        expanded = core.grown(options.margin * fx, options.margin * fy)
        photos = [foot.names[i] for i, seen in enumerate(foot.observed_xy) if i not in foot.test and len(seen)
                  and expanded.contains(seen).mean() >= options.min_view_fraction]
        if not photos:
            raise ValueError(f"tile {index}/{k} has no training photo that sees it; choose fewer tiles")
        tiles.append(TileSpec(index, k, core, expanded, photos))
    return tiles


def tile_megapixels(model: Model, tiles: list[TileSpec], options: TileOptions) -> list[float]:
    foot = Footprints.of(model, options.test_every, options.max_long_side)
    mp = dict(zip(foot.names, foot.megapixels, strict=True))
    return [float(sum(mp[name] for name in tile.photos)) for tile in tiles]


@dataclass
class TileChoice:
    count: int
    reason: str
    train_megapixels: float  # the whole survey's training photos at the training resolution
    photos: int


def choose_tile_count(model: Model, options: TileOptions, budget_megapixels: float, slots: int,
                      min_photos_per_tile: int) -> TileChoice:
    """K for `model`: the fewest tiles whose every tile's training photos fit `budget_megapixels`; and where
    `slots` GPUs (or jobs) run at once, as many tiles as slots when each gets `min_photos_per_tile` photos."""
    foot = Footprints.of(model, options.test_every, options.max_long_side)
    train = [i for i in range(len(foot.names)) if i not in foot.test]
    total = float(foot.megapixels[train].sum())
    by_speed = min(slots, len(train) // max(min_photos_per_tile, 1)) if slots > 1 else 1
    if total <= budget_megapixels:
        k = max(by_speed, 1)
        why = (f"{len(train)} training photos ({total:.0f} MP) fit one GPU's budget ({budget_megapixels:.0f} MP)"
               + (f"; {k} tiles on {slots} parallel GPUs/jobs" if k > 1 else ""))
        return TileChoice(k, why, total, len(train))
    for k in range(max(2, math.ceil(total / budget_megapixels)), MAX_TILES + 1):
        try:
            largest = max(tile_megapixels(model, partition(model, k, options), options))
        except ValueError:
            break
        if largest <= budget_megapixels:
            k = max(k, by_speed)
            return TileChoice(k, f"{len(train)} training photos ({total:.0f} MP) exceed one GPU's budget "
                                 f"({budget_megapixels:.0f} MP): {k} tiles, the largest {largest:.0f} MP", total,
                              len(train))
    raise ValueError(f"{len(train)} training photos ({total:.0f} MP) cannot be tiled so that every tile fits "
                     f"{budget_megapixels:.0f} MP (tried up to {MAX_TILES} tiles); raise the budget")
