"""Load a colmap_export (images/ + sparse/0/) into GPU-resident training data.

Photos are decoded once, downscaled to the resolution policy and kept as uint8 where they fit
(`photos.PhotoStore`: the GPU for most surveys, so a training step does no host work). Every `test_every`-th registered image (sorted by name) is a test view, as gsplat's
parser does (indices 0, 8, 16, ...); `validation_every` keeps some training views out of training for
selection (early stop), so that nothing is chosen on a test view (`stages/evaluation.py`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from spaceport_dagster.stages.colmap_io import ColmapFormatError, Points3D, read_model
from spaceport_dagster.stages.colmap_io import Image as ColmapImage
from spaceport_dagster.stages.evaluation import split_indices, validation_indices
from spaceport_dagster.stages.render import View

from .photos import PhotoStore, choose_residency


class ExportError(ValueError):
    """The colmap_export folder cannot be trained on; the message says why."""


@dataclass
class Scene:
    views: list[View]  # all registered images, sorted by name, at training resolution
    photos: PhotoStore  # (H, W, 3) uint8 on the device when asked for, one per view
    train: list[int]  # the views training steps sample
    test: list[int]  # test views: reported, never used for a choice
    val: list[int]  # validation views (from the training split, not trained on): early stop's figure
    points: np.ndarray  # (P, 3) SfM points
    colors: np.ndarray  # (P, 3) float in [0, 1]
    scene_scale: float  # max camera distance from the camera centroid, times 1.1 (as simple_trainer)
    export_views: list[View]  # the same cameras at the export's resolution (the published figures' size)
    images_dir: Path
    # per view, the SfM points it observed: pixel positions (K, 2) at training resolution and camera depths (K,)
    sparse_depths: list[tuple[Tensor, Tensor]]
    median_depth: float = 0.0  # of every SfM observation of the training views: how far the cameras see

    def lr_scale(self, max_depths: float) -> float:
        """The length the means learning rate scales with: the camera extent (`scene_scale`, as gsplat), capped at
        `max_depths` x 1.1 x the median camera depth when that is set (wide surveys seen from a fixed height)."""
        if max_depths <= 0 or self.median_depth <= 0:
            return self.scene_scale
        return min(self.scene_scale, max_depths * 1.1 * self.median_depth)

    def export_photo(self, index: int) -> Tensor:
        """View `index`'s photo at the export's resolution, (H, W, 3) uint8 on the photos' device."""
        v = self.export_views[index]
        if (v.width, v.height) == (self.views[index].width, self.views[index].height):
            return self.photos[index]
        return torch.from_numpy(_load_photo(self.images_dir / v.name, (v.width, v.height))).to(self.photos.device)

    def export_photos(self, indices: list[int]):
        """The photos of `indices` at the export's resolution, one at a time (a generator)."""
        for i in indices:
            yield self.export_photo(i)

    def mean_colour(self) -> Tensor:
        """Per-channel mean of the training photos (the trivial baseline model)."""
        sums = torch.stack([p.float().mean(dim=(0, 1)) for p in self.photos.iterate(self.train)])
        return sums.mean(dim=0) / 255.0


def target_size(width: int, height: int, max_long_side: int) -> tuple[int, int]:
    if max_long_side <= 0 or max(width, height) <= max_long_side:
        return width, height
    s = max_long_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def _load_photo(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != size:
                im = im.resize(size, Image.Resampling.BOX)
            return np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise ExportError(f"cannot decode export image {path.name}: {exc}") from None


def observed_depths(image: ColmapImage, points: Points3D, scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The SfM points `image` observed (its track entries, so no occluded point): their keypoints scaled by
    `scale` (training / export size) as (K, 2) float pixels, and their depths in its camera (K,)."""
    has_point = image.point3D_ids >= 0
    order = np.argsort(points.ids)
    found = np.searchsorted(points.ids, image.point3D_ids[has_point], sorter=order)
    found = order[np.minimum(found, len(order) - 1)]
    known = points.ids[found] == image.point3D_ids[has_point]  # a filtered export may have dropped some points
    xyz = points.xyz[found[known]]
    depth = (xyz @ image.rotation()[2] + image.tvec[2]).astype(np.float32)
    uv = (image.xys[has_point][known] * np.asarray(scale)).astype(np.float32)
    front = depth > 0
    return uv[front], depth[front]


def load_scene(export: str | Path, max_long_side: int, test_every: int, device: torch.device,
               log: logging.Logger | None = None, validation_every: int = 0, photo_residency: str = "auto",
               gpu_photo_budget: float = 0.3, host_photo_budget: float = 0.4) -> Scene:
    export = Path(export)
    images_dir, sparse = export / "images", export / "sparse" / "0"
    if not export.is_dir():
        raise ExportError(f"export folder {export} does not exist")
    if not images_dir.is_dir() or not any(images_dir.iterdir()):
        raise ExportError(f"export {export} has no images/ folder or it is empty")
    try:
        model = read_model(sparse)
    except ColmapFormatError as exc:
        raise ExportError(f"export {export}: unreadable COLMAP model: {exc}") from None
    images = sorted(model.images.values(), key=lambda im: im.name)
    if len(images) < 2:
        raise ExportError(f"export {export} has {len(images)} registered image(s); training needs at least 2")
    if len(model.points.xyz) == 0:
        raise ExportError(f"export {export} has no 3D points to initialise the splat from")
    missing = [im.name for im in images if not (images_dir / im.name).is_file()]
    if missing:
        raise ExportError(f"export {export} lacks {len(missing)} image file(s) named in images.bin: {missing[:5]}")
    views, export_views, depths = [], [], []
    for im in images:
        cam = model.cameras.get(im.camera_id)
        if cam is None:
            raise ExportError(f"image {im.name} refers to camera {im.camera_id}, absent from cameras.bin")
        try:
            K = cam.intrinsics()
        except ColmapFormatError as exc:
            raise ExportError(str(exc)) from None
        export_views.append(View(im.name, im.world_to_camera(), K.copy(), cam.width, cam.height))
        w, h = target_size(cam.width, cam.height, max_long_side)
        K[0] *= w / cam.width
        K[1] *= h / cam.height
        views.append(View(im.name, im.world_to_camera(), K, w, h))
        uv, z = observed_depths(im, model.points, (w / cam.width, h / cam.height))
        depths.append((torch.from_numpy(uv).to(device), torch.from_numpy(z).to(device)))
    sizes = [(v.width, v.height) for v in views]
    residency = choose_residency(sum(w * h * 3 for w, h in sizes), device, photo_residency, gpu_photo_budget,
                                 host_photo_budget)
    photos = PhotoStore(lambda i: _load_photo(images_dir / views[i].name, sizes[i]), sizes, device, residency,
                        workers=min(8, os.cpu_count() or 1), log=log)
    train, test = split_indices(len(views), test_every)
    val = validation_indices(train, validation_every)
    train = [i for i in train if i not in val]
    for i in test:
        views[i].heldout = export_views[i].heldout = True
    centers = np.stack([im.center() for im in images])
    scene_scale = float(np.linalg.norm(centers - centers.mean(0), axis=1).max()) * 1.1
    if log:
        log.info(f"export: {len(views)} images ({len(train)} train / {len(val)} validation / {len(test)} test) at "
                 f"{views[0].width}x{views[0].height}, {len(model.points.xyz)} SfM points, scene scale {scene_scale:.3f}")
    observed = [depths[i][1] for i in train if len(depths[i][1])]
    median_depth = float(torch.cat(observed).median()) if observed else 0.0
    return Scene(views, photos, train, test, val, model.points.xyz.astype(np.float32),
                 model.points.rgb.astype(np.float32) / 255.0, max(scene_scale, 1e-6), export_views, images_dir,
                 depths, median_depth)
