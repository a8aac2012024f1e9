"""GaussianCloud -> SOG v2 textures and meta.json (in memory; no files)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from spaceport_dagster.stages.ply import GaussianCloud
from spaceport_dagster.stages.render import pick_device

from . import codebook
from .format import (
    MEANS_FILES,
    PALETTE_COLUMNS,
    QUATS_FILE,
    SCALES_FILE,
    SH0_FILE,
    SH_COEFFS,
    SHN_FILES,
    VERSION,
    SogFormatError,
    compact_palette_size,
    log_transform,
    palette_size,
    sigmoid,
    texture_size,
)
from .kmeans import kmeans
from .morton import morton_order
from .webp import WebpSettings
from .webp import encode as encode_webp

GENERATOR = "spaceport-dagster sog"


@dataclass(frozen=True)
class EncodeOptions:
    sh_bands: int = 3  # highest SH band to keep (0-3); capped at the cloud's own degree
    kmeans_iterations: int = 10
    kmeans_method: str = "auto"  # auto | flat | two_level
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:n]
    splats_per_palette_entry: int = 16  # shN palette size ~ N / this; 0 = the reference writer's rule

    def __post_init__(self) -> None:
        if self.splats_per_palette_entry < 0:
            raise ValueError(f"splats_per_palette_entry must be >= 0, got {self.splats_per_palette_entry}")
        if self.sh_bands not in (0, 1, 2, 3):
            raise ValueError(f"sh_bands must be 0, 1, 2 or 3, got {self.sh_bands}")
        if self.kmeans_method not in ("auto", "flat", "two_level"):
            raise ValueError(f"kmeans_method must be auto, flat or two_level, got {self.kmeans_method!r}")
        if self.kmeans_iterations < 0:
            raise ValueError(f"kmeans_iterations must be >= 0, got {self.kmeans_iterations}")


@dataclass
class EncodedSog:
    meta: dict[str, Any]
    images: dict[str, np.ndarray]  # file name -> (H, W, 4) uint8
    order: np.ndarray  # bundle row i holds source splat order[i]
    sh_bands: int
    timings: dict[str, float] = field(default_factory=dict)
    kmeans_method: str = ""


def _texture(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) uint8 texels laid out row-major from the top left, padding texels zero."""
    flat = np.zeros((width * height, 4), np.uint8)
    flat[: len(rows)] = rows
    return flat.reshape(height, width, 4)


def encode_means(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float], list[float]]:
    """16-bit log-domain positions: (low bytes (N,3), high bytes (N,3), mins, maxs)."""
    logs = log_transform(means)
    lmin, lmax = logs.min(axis=0), logs.max(axis=0)
    span = lmax - lmin
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.floor(65535.0 * (logs - lmin) / span)
    q = np.where(span > 0, q, 0.0)
    q = np.clip(q, 0, 65535).astype(np.uint32)
    return (q & 0xFF).astype(np.uint8), (q >> 8).astype(np.uint8), lmin.tolist(), lmax.tolist()


def encode_quats(quats: np.ndarray) -> np.ndarray:
    """Smallest-three quaternions (w x y z in): (N, 4) bytes, A = 252 + index of the dropped component."""
    q = quats.astype(np.float64)
    norm = np.sqrt(q[:, 0] * q[:, 0] + q[:, 1] * q[:, 1] + q[:, 2] * q[:, 2] + q[:, 3] * q[:, 3])
    zero = norm == 0
    q = np.where(zero[:, None], np.array([1.0, 0.0, 0.0, 0.0]), q / np.where(zero, 1.0, norm)[:, None])
    largest = np.argmax(np.abs(q), axis=1)  # first index wins ties, like the reference
    rows = np.arange(len(q))
    sign = np.where(q[rows, largest] < 0, -1.0, 1.0) * math.sqrt(2.0)
    q = q * sign[:, None]
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    three = np.take_along_axis(q, keep, axis=1)
    out = np.empty((len(q), 4), np.uint8)
    out[:, :3] = np.clip(np.floor(255.0 * (three * 0.5 + 0.5)), 0, 255).astype(np.uint8)
    out[:, 3] = 252 + largest
    return out


def encode_opacity(opacities: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(sigmoid(opacities) * 255.0, 0.0, 255.0)).astype(np.uint8)


def cluster_shn(shn: np.ndarray, options: EncodeOptions) -> tuple[np.ndarray, np.ndarray, str, float]:
    """k-means palette of the (N, K, 3) SH rest: (centroids (P, 3, K), labels (N,), method, seconds)."""
    n, k, _ = shn.shape
    rows = np.ascontiguousarray(shn.transpose(0, 2, 1).reshape(n, 3 * k))  # channel-major like f_rest
    palette = (compact_palette_size(n, options.splats_per_palette_entry) if options.splats_per_palette_entry
               else palette_size(n))
    t0 = time.perf_counter()
    result = kmeans(torch.from_numpy(rows), palette, options.kmeans_iterations, options.seed,
                    pick_device(options.device), options.kmeans_method)
    centroids = result.centroids.numpy().reshape(palette, 3, k)
    return centroids, result.labels.numpy(), result.method, time.perf_counter() - t0


def first_use_order(centroids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the palette in order of first use along the (Morton-ordered) splats, unused entries last.

    Labels then mostly count upwards along the texture, which WebP predicts well when the palette is about
    as large as the splat count (the label image of a 20k-splat scene shrinks by more than half); with many
    splats per entry the k-means order can compress better. The decoded values do not change.
    """
    first = np.full(len(centroids), len(labels), dtype=np.int64)
    np.minimum.at(first, labels, np.arange(len(labels)))
    new_to_old = np.argsort(first, kind="stable")
    old_to_new = np.empty_like(new_to_old)
    old_to_new[new_to_old] = np.arange(len(new_to_old))
    return centroids[new_to_old], old_to_new[labels]


def palette_texture(indices: np.ndarray) -> np.ndarray:
    """shN_centroids texture from the (P, 3, K) codebook indices: centroid n, coefficient j at
    ((n % 64) * K + j, n // 64)."""
    palette, _, k = indices.shape
    height = math.ceil(palette / PALETTE_COLUMNS)
    tex = np.zeros((height, PALETTE_COLUMNS * k, 4), np.uint8)
    n_idx = np.arange(palette)
    for j in range(k):
        x = (n_idx % PALETTE_COLUMNS) * k + j
        tex[n_idx // PALETTE_COLUMNS, x, :3] = indices[:, :, j]
        tex[n_idx // PALETTE_COLUMNS, x, 3] = 255
    return tex


ImageSink = Callable[[str, np.ndarray], None]


def label_texture(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    rows = np.zeros((len(labels), 4), np.uint8)
    rows[:, 0] = labels & 0xFF
    rows[:, 1] = labels >> 8
    rows[:, 3] = 255
    return _texture(rows, width, height)


def _smaller_labels(labels: np.ndarray, palette: int, width: int, height: int,
                    sizing: WebpSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(new_to_old palette order, labels, label texture) of the order, k-means' own or first use, whose
    label image compresses smaller."""
    identity = np.arange(palette)
    candidates = [(identity, labels), first_use_order(identity, labels)]
    textures = [label_texture(lab, width, height) for _, lab in candidates]
    with ThreadPoolExecutor(max_workers=2) as pool:
        sizes = list(pool.map(lambda t: len(encode_webp(t, sizing)), textures))
    best = int(np.argmin(sizes))
    return candidates[best][0], candidates[best][1], textures[best]


def encode_cloud(cloud: GaussianCloud, options: EncodeOptions | None = None,
                 on_image: ImageSink | None = None, webp_settings: WebpSettings | None = None) -> EncodedSog:
    """Morton-order and quantise `cloud` into the SOG v2 textures and meta.json.

    The SH k-means (the long pole) runs in a background thread while the other attributes are encoded;
    `on_image(name, texture)` is called as each texture is ready, so a caller can compress it meanwhile.
    `webp_settings` are those the caller compresses with (the palette order is chosen by label image size).
    """
    options = options or EncodeOptions()
    sizing = replace(webp_settings or WebpSettings(), verify=False)
    n = len(cloud)
    width, height = texture_size(n)
    if not cloud.all_finite():
        raise SogFormatError("the splat has NaN or infinite values; SOG cannot encode them")
    timings: dict[str, float] = {}
    images: dict[str, np.ndarray] = {}

    def emit(name: str, texture: np.ndarray) -> None:
        images[name] = texture
        if on_image is not None:
            on_image(name, texture)

    t0 = time.perf_counter()
    order = morton_order(cloud.means)
    timings["morton"] = time.perf_counter() - t0
    bands = min(options.sh_bands, cloud.sh_degree)
    dp_device = "cuda" if pick_device(options.device).type == "cuda" else None
    # every job below is numpy or torch work that releases the GIL, so the threads run in parallel
    with ThreadPoolExecutor(max_workers=5) as jobs:
        clustering = None
        if bands > 0:
            clustering = jobs.submit(cluster_shn, cloud.shN[order][:, : SH_COEFFS[bands], :], options)
        t0 = time.perf_counter()
        means_job = jobs.submit(encode_means, cloud.means[order])
        quats_job = jobs.submit(encode_quats, cloud.quats[order])
        scales_job = jobs.submit(codebook.quantise, cloud.scales[order], device=dp_device)
        sh0_job = jobs.submit(codebook.quantise, cloud.sh0[order], device=dp_device)
        opaque = np.full((n, 1), 255, np.uint8)
        lo, hi, mins, maxs = means_job.result()
        emit(MEANS_FILES[0], _texture(np.hstack([lo, opaque]), width, height))
        emit(MEANS_FILES[1], _texture(np.hstack([hi, opaque]), width, height))
        emit(QUATS_FILE, _texture(quats_job.result(), width, height))
        scales_book, scales_idx = scales_job.result()
        emit(SCALES_FILE, _texture(np.hstack([scales_idx, opaque]), width, height))
        sh0_book, sh0_idx = sh0_job.result()
        opacity = encode_opacity(cloud.opacities[order])[:, None]
        emit(SH0_FILE, _texture(np.hstack([sh0_idx, opacity]), width, height))
        timings["attributes"] = time.perf_counter() - t0
        meta: dict[str, Any] = {
            "version": VERSION,
            "asset": {"generator": GENERATOR},
            "count": n,
            "means": {"mins": mins, "maxs": maxs, "files": list(MEANS_FILES)},
            "scales": {"codebook": scales_book.tolist(), "files": [SCALES_FILE]},
            "quats": {"files": [QUATS_FILE]},
            "sh0": {"codebook": sh0_book.tolist(), "files": [SH0_FILE]},
        }
        method = ""
        if clustering is not None:
            t0 = time.perf_counter()
            centroids, labels, method, timings["kmeans"] = clustering.result()
            timings["kmeans_wait"] = time.perf_counter() - t0
            # the codebook does not depend on the palette order, so it is built while the order is chosen
            palette_job = jobs.submit(codebook.quantise, centroids, device=dp_device)
            new_to_old, labels, label_tex = _smaller_labels(labels, len(centroids), width, height, sizing)
            book, indices = palette_job.result()
            emit(SHN_FILES[0], palette_texture(indices[new_to_old]))
            emit(SHN_FILES[1], label_tex)
            meta["shN"] = {"count": len(centroids), "bands": bands, "codebook": book.tolist(),
                           "files": list(SHN_FILES)}
    return EncodedSog(meta, images, order, bands, timings, method)
