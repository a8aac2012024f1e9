"""Constants and small formulas of PlayCanvas SOG version 2 (see shared/reference/sog-format.md)."""

from __future__ import annotations

import math

import numpy as np

VERSION = 2
SH_C0 = 0.28209479177387814
SH_COEFFS = {0: 0, 1: 3, 2: 8, 3: 15}  # coefficients per colour channel for each band count
BANDS_BY_COEFFS = {v: k for k, v in SH_COEFFS.items()}
MAX_TEXTURE_SIDE = 16383
CODEBOOK_SIZE = 256
PALETTE_COLUMNS = 64  # centroids per row of shN_centroids.webp

MEANS_FILES = ("means_l.webp", "means_u.webp")
QUATS_FILE = "quats.webp"
SCALES_FILE = "scales.webp"
SH0_FILE = "sh0.webp"
SHN_FILES = ("shN_centroids.webp", "shN_labels.webp")


class SogFormatError(ValueError):
    """A bundle or its parts do not follow SOG version 2 (or a value cannot be encoded)."""


def texture_size(count: int) -> tuple[int, int]:
    """(W, H) of every per-splat image: W = ceil(sqrt(N)/4)*4, H = ceil(N/W/4)*4."""
    if count < 1:
        raise SogFormatError(f"a SOG bundle needs at least one splat, got {count}")
    width = math.ceil(math.sqrt(count) / 4) * 4
    height = math.ceil(count / width / 4) * 4
    if width > MAX_TEXTURE_SIDE or height > MAX_TEXTURE_SIDE:
        raise SogFormatError(f"{count} splats need {width}x{height} textures; WebP allows at most {MAX_TEXTURE_SIDE}")
    return width, height


def palette_size(count: int) -> int:
    """shN palette entries: min(64, 2^floor(log2(N/1024))) * 1024, as the reference writer computes it."""
    return int(min(64.0, 2.0 ** math.floor(math.log2(count / 1024))) * 1024)


def compact_palette_size(count: int, splats_per_entry: int) -> int:
    """A palette that scales with the splat count: about `splats_per_entry` splats per entry (a power of two,
    at least 256 or the largest power of two <= N if that is less, at most 65536). Any size decodes; the reference rule gives 65,536 entries (2.9 MB of
    centroids) from 64k splats on, which alone kept a 150k-splat trained scene under 10x."""
    target = 2 ** round(math.log2(max(1.0, count / splats_per_entry)))
    floor = min(256, 2 ** math.floor(math.log2(count)))
    return int(min(65_536, max(target, floor)))


def log_transform(x: np.ndarray) -> np.ndarray:
    """sign(x) * ln(|x| + 1), in float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log(np.abs(x) + 1.0)


def inv_log_transform(n: np.ndarray) -> np.ndarray:
    """sign(n) * (exp(|n|) - 1), in float64."""
    n = np.asarray(n, dtype=np.float64)
    return np.sign(n) * (np.exp(np.abs(n)) - 1.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) in float64, the reference writer's form."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse sigmoid, clamped to [eps, 1 - eps] like splat-transform's reader."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))
