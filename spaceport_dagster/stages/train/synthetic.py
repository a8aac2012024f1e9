"""A tiny synthetic colmap_export with known ground truth, for tests and demos without GPUs or SfM.

A textured ground patch with a few bumps, photographed by a ring of downward-looking "drone" cameras; the
photos are rendered with the PyTorch rasteriser from a ground-truth Gaussian cloud, and the SfM points are a
noisy subset of that cloud with its colours. With `ground_extent` 1 the patch is small and the photos show
black beyond it; with 3 the ground fills every photo, as in a mapping flight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from spaceport_dagster.stages import raster_torch
from spaceport_dagster.stages.colmap_io import Camera, Image, Points3D, rotmat_to_qvec, write_model


def look_at(center: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera 4x4 for an OpenCV camera (x right, y down, z forward) at `center` looking at `target`."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = -R @ center
    return m


def ground_truth(n: int = 1500, seed: int = 0, extent: float = 1.0) -> dict[str, np.ndarray]:
    """`n` Gaussians per unit of extent squared over the square [-extent, extent]^2."""
    rng = np.random.default_rng(seed)
    n = round(n * extent * extent)
    xy = rng.uniform(-extent, extent, (n, 2))
    z = 0.25 * np.exp(-((xy[:, 0] - 0.3) ** 2 + (xy[:, 1] + 0.2) ** 2) / 0.08)
    z += 0.15 * np.exp(-((xy[:, 0] + 0.4) ** 2 + (xy[:, 1] - 0.4) ** 2) / 0.04)
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * xy[:, 0]), 0.5 + 0.4 * np.cos(4 * xy[:, 1]),
                    0.3 + 0.6 * (z / max(z.max(), 1e-6))], axis=1).clip(0, 1)
    return {"means": np.concatenate([xy, z[:, None]], 1), "rgb": rgb,
            "scales": np.full((n, 3), np.log(0.045)), "quats": np.tile([1.0, 0, 0, 0], (n, 1)),
            "opacities": np.full(n, 0.9)}


def write_synthetic_export(folder: str | Path, n_views: int = 16, width: int = 64, height: int = 48,
                           n_sfm_points: int = 400, seed: int = 0, ground_extent: float = 1.0) -> Path:
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    gt = ground_truth(seed=seed, extent=ground_extent)
    t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in gt.items()}
    f = 0.8 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    cameras = {1: Camera(1, "PINHOLE", width, height, np.array([f, f, width / 2, height / 2]))}
    images = {}
    for i in range(n_views):
        a = 2 * np.pi * i / n_views
        center = np.array([1.3 * np.cos(a), 1.3 * np.sin(a), 1.8])
        w2c = look_at(center, np.array([0.2 * np.cos(a), 0.2 * np.sin(a), 0.0]))
        with torch.no_grad():
            img, _, _ = raster_torch.rasterize(t["means"], t["quats"], torch.exp(t["scales"]), t["opacities"],
                                               t["rgb"], torch.as_tensor(w2c, dtype=torch.float32), K, width, height)
        name = f"view_{i:03d}.png"
        PILImage.fromarray((img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(folder / "images" / name)
        images[i + 1] = Image(i + 1, name, 1, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], np.zeros((0, 2)),
                              np.zeros(0, np.int64))
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(len(gt["means"]), n_sfm_points, replace=False)
    xyz = gt["means"][pick] + rng.normal(0, 0.02, (n_sfm_points, 3))
    rgb = (gt["rgb"][pick] * 255).round().astype(np.uint8)
    ids = np.arange(1, n_sfm_points + 1)
    track_lengths = np.zeros(n_sfm_points, np.int64)
    for image in images.values():  # each view observes the points it sees (a heightfield from above: no occlusion)
        cam = xyz @ image.rotation().T + image.tvec
        uv = cam[:, :2] / cam[:, 2:] * f + np.array([width / 2, height / 2])
        seen = (cam[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        image.xys, image.point3D_ids = uv[seen], ids[seen]
        track_lengths += seen
    points = Points3D(ids, xyz, rgb, np.full(n_sfm_points, 0.5), track_lengths)
    write_model(folder / "sparse" / "0", cameras, images, points)
    return folder
