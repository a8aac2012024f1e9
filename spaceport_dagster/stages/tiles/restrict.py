"""Restrict a loaded training scene to one tile: its photos (never a test view), the SfM points in its
expanded cell, and of each photo's sparse depths only those of points in that cell (the others have no
Gaussian in this tile to render them)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from spaceport_dagster.stages.colmap_io import Image as ColmapImage
from spaceport_dagster.stages.colmap_io import Points3D, read_model

from .spec import TileSpec


def observed_xyz(image: ColmapImage, points: Points3D) -> np.ndarray:
    """The SfM points `image` observed in front of it, in the order of `train.data.observed_depths`."""
    has_point = image.point3D_ids >= 0
    order = np.argsort(points.ids)
    found = np.searchsorted(points.ids, image.point3D_ids[has_point], sorter=order)
    found = order[np.minimum(found, len(order) - 1)]
    known = points.ids[found] == image.point3D_ids[has_point]
    xyz = points.xyz[found[known]]
    depth = xyz @ image.rotation()[2] + image.tvec[2]
    return xyz[depth > 0]


def restrict_scene(scene, tile: TileSpec, export: str | Path, log: logging.Logger,  # Scene -> Scene
                   free_unused: bool = True):
    """`scene` (train.data.Scene, all registered views) cut down to `tile`. The view indices stay global, so
    the test views are the survey's own; the ones that see the tile are kept for its report, never trained.
    `free_unused`: drop the other photos from memory (PhotoStore.keep_only)."""
    names = [v.name for v in scene.views]
    unknown = sorted(set(tile.photos) - set(names))
    if unknown:
        raise ValueError(f"{tile.label} names photos the export does not have: {unknown[:5]}")
    photos = set(tile.photos)
    held = [names[i] for i in scene.test if names[i] in photos]
    if held:
        raise ValueError(f"{tile.label} lists test view(s) {held[:5]} as training photos; test views train no tile")
    model = read_model(Path(export) / "sparse" / "0")
    by_name = {im.name: im for im in model.images.values()}
    depths, seen = [], []
    for i, view in enumerate(scene.views):
        xyz = observed_xyz(by_name[view.name], model.points)
        uv, z = scene.sparse_depths[i]
        if len(xyz) != len(z):
            raise RuntimeError(f"sparse depths of {view.name} do not match its observed points ({len(z)} vs {len(xyz)})")
        inside = tile.expanded.contains(xyz)
        keep = torch.from_numpy(inside).to(z.device)
        depths.append((uv[keep], z[keep]))
        seen.append(float(tile.core.contains(xyz).mean()) if len(xyz) else 0.0)
    train = [i for i in scene.train if names[i] in photos]
    val = [i for i in scene.val if names[i] in photos]
    test = [i for i in scene.test if seen[i] > 0]  # reported only: the tile's figures on the views it draws
    if free_unused:
        scene.photos.keep_only(set(train) | set(val) | set(test))
    in_cell = tile.expanded.contains(scene.points)
    if not in_cell.any():
        raise ValueError(f"{tile.label} holds no SfM point to start from")
    log.info(f"{tile.label}: {len(train)} training photos of {len(scene.train)}, {int(in_cell.sum())} of "
             f"{len(scene.points)} SfM points in its expanded cell, {len(test)} test views see its core cell")
    return dataclasses.replace(scene, train=train, val=val, test=test,
                               points=scene.points[in_cell], colors=scene.colors[in_cell], sparse_depths=depths)
