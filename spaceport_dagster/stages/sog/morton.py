"""Morton (Z-order) sort of splat centres, as PlayCanvas's writer orders them.

Bounding box of the points, 10 bits per axis (`min(1023, floor((x - min) * 1024 / len))`), code
`part1by2(z) << 2 | part1by2(y) << 1 | part1by2(x)`, stable sort; every run of more than 256 equal
codes is sorted again inside its own bounding box. The order makes the images compress well and lets
the engine skip a re-sort.
"""

from __future__ import annotations

import numpy as np

REFINE_ABOVE = 256


def part1by2(v: np.ndarray) -> np.ndarray:
    """Spread the low 10 bits of `v` to every third bit."""
    v = v.astype(np.uint32) & np.uint32(0x3FF)
    v = (v ^ (v << np.uint32(16))) & np.uint32(0xFF0000FF)
    v = (v ^ (v << np.uint32(8))) & np.uint32(0x0300F00F)
    v = (v ^ (v << np.uint32(4))) & np.uint32(0x030C30C3)
    v = (v ^ (v << np.uint32(2))) & np.uint32(0x09249249)
    return v


def _cell(values: np.ndarray) -> np.ndarray:
    lo, hi = values.min(), values.max()
    span = hi - lo
    if span == 0:
        return np.zeros(values.shape, np.uint32)
    scaled = np.minimum(1023.0, (values - lo) * (1024.0 / span))
    return scaled.astype(np.uint32)  # truncation; values are >= 0


def morton_codes(points: np.ndarray) -> np.ndarray:
    """30-bit Morton codes of `points` (M, 3) inside their own bounding box."""
    p = np.asarray(points, dtype=np.float64)
    return (part1by2(_cell(p[:, 2])) << np.uint32(2)) | (part1by2(_cell(p[:, 1])) << np.uint32(1)) | part1by2(
        _cell(p[:, 0])
    )


def _sort(points: np.ndarray, index: np.ndarray) -> np.ndarray:
    sub = points[index]
    lo, hi = sub.min(axis=0), sub.max(axis=0)
    if not np.isfinite(hi - lo).all() or (hi == lo).all():
        return index  # identical (or non-finite) points keep their order
    codes = morton_codes(sub)
    order = np.argsort(codes, kind="stable")
    index = index[order]
    codes = codes[order]
    # runs of equal codes longer than REFINE_ABOVE are refined recursively
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    ends = np.append(starts[1:], len(codes))
    for s, e in zip(starts[(ends - starts) > REFINE_ABOVE], ends[(ends - starts) > REFINE_ABOVE], strict=True):
        index[s:e] = _sort(points, index[s:e])
    return index


def morton_order(points: np.ndarray) -> np.ndarray:
    """Permutation (int64) that puts `points` (N, 3) in refined Morton order."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    index = np.arange(len(points), dtype=np.int64)
    if len(points) == 0:
        return index
    return _sort(points, index)
