"""Synthetic splats for tests and benchmarks (no trained scene needed).

`random_cloud`: independent normal values, the hardest case for a palette.
`realistic_cloud`: structure like a trained drone scene: splats in blobs along surfaces of a ~40 m scene with
a far background shell, log-normal scales, bimodal opacity, per-blob colours and SH "materials" with
per-splat variation, SH energy falling with the band.
"""

from __future__ import annotations

import numpy as np

from spaceport_dagster.stages.ply import SH_COEFFS_PER_DEGREE, GaussianCloud


def random_cloud(n: int, sh_degree: int = 3, seed: int = 0, spread: float = 3.0) -> GaussianCloud:
    rng = np.random.default_rng(seed)
    k = SH_COEFFS_PER_DEGREE[sh_degree]
    return GaussianCloud(
        means=rng.normal(0, spread, (n, 3)).astype(np.float32),
        sh0=rng.normal(0, 0.5, (n, 3)).astype(np.float32),
        shN=rng.normal(0, 0.1, (n, k, 3)).astype(np.float32),
        opacities=rng.normal(0, 2, n).astype(np.float32),
        scales=rng.normal(-4, 1, (n, 3)).astype(np.float32),
        quats=rng.normal(0, 1, (n, 4)).astype(np.float32),
    )


def realistic_cloud(n: int, sh_degree: int = 3, seed: int = 0, blobs: int = 2000) -> GaussianCloud:
    rng = np.random.default_rng(seed)
    k = SH_COEFFS_PER_DEGREE[sh_degree]
    blob = rng.integers(0, blobs, n)
    centres = rng.uniform(-20, 20, (blobs, 3)) * np.array([1.0, 1.0, 0.25])
    radius = np.exp(rng.normal(0.0, 0.7, blobs))
    normal = rng.normal(0, 1, (blobs, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    offset = rng.normal(0, 1, (n, 3)) * radius[blob, None]
    offset -= (offset * normal[blob]).sum(1, keepdims=True) * normal[blob] * 0.95  # flatten onto a surface
    means = centres[blob] + offset
    far = rng.random(n) < 0.05  # background shell (sky, distant terrain)
    direction = rng.normal(0, 1, (int(far.sum()), 3))
    means[far] = direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.uniform(60, 300, (len(direction), 1))
    base_scale = rng.normal(-4.0, 0.8, n) + np.where(far, 2.0, 0.0)
    scales = base_scale[:, None] + rng.normal(0, 0.5, (n, 3))
    opacities = np.where(rng.random(n) < 0.6, rng.normal(3.0, 1.5, n), rng.normal(-2.0, 2.0, n))
    blob_colour = rng.normal(0.0, 0.6, (blobs, 3))
    sh0 = blob_colour[blob] + rng.normal(0, 0.15, (n, 3))
    shn = np.zeros((n, k, 3))
    if k:
        band_of = np.repeat([1, 2, 3], [3, 5, 7])[:k]
        amplitude = np.array([0.12, 0.06, 0.03])[band_of - 1]
        materials = rng.normal(0, 1, (256, k, 3)) * amplitude[None, :, None]
        blob_material = rng.integers(0, 256, blobs)
        shn = materials[blob_material[blob]] + rng.normal(0, 1, (n, k, 3)) * amplitude[None, :, None] * 0.3
    return GaussianCloud(
        means=means.astype(np.float32), sh0=sh0.astype(np.float32), shN=shn.astype(np.float32),
        opacities=opacities.astype(np.float32), scales=scales.astype(np.float32),
        quats=rng.normal(0, 1, (n, 4)).astype(np.float32),
    )
