"""k-means for the higher-order SH palette, in torch (GPU when there is one, vectorised on the CPU).

`flat`: Lloyd's algorithm over all points and all centroids, distances by chunked matrix products (on
CUDA, large problems use the fused nearest-centroid kernel of fused_nearest.py instead).
`two_level`: for CPU runs where flat k-means costs too much (1M points x 65536 centroids x 45 dims is
~6 TFLOP per iteration): sqrt(k) coarse clusters first, then each coarse cluster gets centroids in
proportion to its size and runs its own Lloyd iterations. `auto` picks flat on CUDA or when the work is
small. Every path is deterministic for a seed: initial centroids come from a seeded permutation, sums
are taken over label-sorted points (no atomics), empty clusters are re-seeded with the worst-fitted points.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from . import fused_nearest
from .fused_nearest import FusedNearest

FLAT_WORK_LIMIT = 5e9  # multiply-adds of flat k-means above which `auto` goes two-level on the CPU (~0.5 s)
# points x centroids from which CUDA k-means uses the fused kernel: below it the float16 torch path's 11
# assignments (~5 ms per 1e9 pairs on an H100) take less than compiling the kernel into an empty Triton cache
# (~1.1 s, once per machine or container)
FUSED_MIN_PAIRS = 2e10


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # (k, D) float32, on the CPU
    labels: torch.Tensor  # (N,) int64, on the CPU
    method: str


def _chunk_rows(k: int, device: torch.device) -> int:
    budget = (1 << 31) if device.type == "cuda" else (1 << 27)  # bytes for one distance block
    return max(256, budget // (4 * max(k, 1)))


def assign(points: torch.Tensor, centroids: torch.Tensor, fast: FusedNearest | torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, squared distance to the label) for every point; chunked to bound memory.

    `fast` (CUDA only) picks the nearest centroid in reduced precision; the distance to it is then recomputed
    in float32. A `FusedNearest` never materialises the distance matrix (see fused_nearest.py). A float16 copy
    of the points makes the torch path compute and scan the distance blocks in float16: with 45-dim points the
    matrix product is bound by writing the N x k block, so half the bytes is about twice the speed.
    """
    if isinstance(fast, FusedNearest):
        labels = fast.labels(centroids)
        return labels, ((points - centroids[labels]) ** 2).sum(1)
    c_norm = (centroids * centroids).sum(1)
    rows = _chunk_rows(len(centroids), points.device)
    labels = torch.empty(len(points), dtype=torch.int64, device=points.device)
    dists = torch.empty(len(points), dtype=points.dtype, device=points.device)
    c_half = centroids.half() if fast is not None else None
    for start in range(0, len(points), rows):
        block = points[start : start + rows]
        if fast is not None:
            d = torch.addmm(c_norm.half()[None, :], fast[start : start + rows], c_half.T, alpha=-2.0)
            idx = torch.argmin(d, dim=1)
            labels[start : start + rows] = idx
            dists[start : start + rows] = ((block - centroids[idx]) ** 2).sum(1)
            continue
        d = torch.addmm(c_norm[None, :], block, centroids.T, alpha=-2.0)
        best, idx = torch.min(d, dim=1)
        labels[start : start + rows] = idx
        dists[start : start + rows] = (best + (block * block).sum(1)).clamp_min(0)
    return labels, dists


def uses_fused_kernel(device: torch.device, n: int, k: int) -> bool:
    """Whether flat k-means of n points into k centroids on `device` searches with the fused kernel."""
    return fused_nearest.available(device) and n * k >= FUSED_MIN_PAIRS


def _fast_search(points: torch.Tensor, k: int) -> FusedNearest | torch.Tensor | None:
    """The reduced-precision nearest-centroid search for `points`: fused kernel, float16 torch, or none (CPU)."""
    if not points.is_cuda:
        return None
    return FusedNearest(points) if uses_fused_kernel(points.device, len(points), k) else points.half()


def _prefix_sums(values: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """(N + 1, D) running sums down the rows, from a zero first row; every entry summed in a fixed order.

    In two levels, within blocks of rows and then over the block totals: torch's CUDA cumsum over the first
    dimension of an (N, 45) tensor runs one thread per column through all N rows, about 0.4 s at 1M rows,
    while the blocks here run in parallel.
    """
    n, d = values.shape
    pad = (-n) % block
    blocks = torch.cat([values, values.new_zeros(pad, d)]).view(-1, block, d)
    within = torch.cumsum(blocks, dim=1)
    before = torch.cumsum(within[:-1, -1], dim=0)  # total of all earlier blocks, for blocks 1..
    within[1:] += before[:, None, :]
    return torch.cat([values.new_zeros(1, d), within.view(-1, d)[:n]])


def _sums(points: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-label sums (float64) and counts, summed in label-sorted order so the result is deterministic."""
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    csum = _prefix_sums(points[order].double())
    bounds = torch.searchsorted(sorted_labels, torch.arange(k + 1, device=points.device))
    return csum[bounds[1:]] - csum[bounds[:-1]], (bounds[1:] - bounds[:-1])


def flat_kmeans(points: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm; returns (centroids, labels) on the points' device."""
    n = len(points)
    if k >= n:
        centroids = torch.cat([points, points[:1].expand(k - n, -1)]) if k > n else points.clone()
        return centroids, torch.arange(n, device=points.device)
    init = torch.randperm(n, generator=generator)[:k].to(points.device)
    centroids = points[init].clone()
    fast = _fast_search(points, k)
    for _ in range(iterations):
        labels, dists = assign(points, centroids, fast)
        sums, counts = _sums(points, labels, k)
        filled = counts > 0
        centroids = torch.where(filled[:, None], (sums / counts.clamp_min(1)[:, None]).float(), centroids)
        empty = torch.nonzero(~filled).flatten()
        if len(empty):  # re-seed with the points that fit their centroid worst
            worst = torch.topk(dists, len(empty)).indices
            centroids[empty] = points[worst]
    labels, _ = assign(points, centroids, fast)
    return centroids, labels


def _allocate(sizes: torch.Tensor, k: int) -> torch.Tensor:
    """Split k centroids over groups in proportion to their sizes (largest remainder), 1 <= k_g <= size_g."""
    sizes = sizes.double()
    share = sizes / sizes.sum() * k
    alloc = torch.minimum(torch.floor(share).clamp_min(1), sizes).long()
    alloc[sizes == 0] = 0
    while int(alloc.sum()) != k:
        if int(alloc.sum()) < k:
            room = (alloc < sizes.long()) & (sizes > 0)
            gain = torch.where(room, share - alloc.double(), torch.tensor(-math.inf, dtype=torch.float64))
            alloc[int(torch.argmax(gain))] += 1
        else:
            spare = alloc > 1
            loss = torch.where(spare, alloc.double() - share, torch.tensor(-math.inf, dtype=torch.float64))
            alloc[int(torch.argmax(loss))] -= 1
    return alloc


def two_level_kmeans(
    points: torch.Tensor, k: int, iterations: int, generator: torch.Generator, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(points)
    coarse_k = max(1, min(k, round(math.sqrt(k))))
    sample_size = min(n, 128 * coarse_k)  # the coarse split only needs to be roughly right
    sample = points[torch.randperm(n, generator=generator)[:sample_size].to(points.device)]
    coarse, _ = flat_kmeans(sample, coarse_k, iterations, generator)
    coarse_labels, _ = assign(points, coarse)
    order = torch.argsort(coarse_labels, stable=True)
    sizes = torch.bincount(coarse_labels, minlength=coarse_k).cpu()
    alloc = _allocate(sizes, k)
    starts = torch.cumsum(sizes, 0) - sizes
    offsets = torch.cumsum(alloc, 0) - alloc

    def fine(group: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        members = order[int(starts[group]) : int(starts[group] + sizes[group])]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + group + 1)
        c, lab = flat_kmeans(points[members], int(alloc[group]), iterations, gen)
        return group, c, lab

    centroids = torch.empty(k, points.shape[1], dtype=points.dtype, device=points.device)
    labels = torch.empty(n, dtype=torch.int64, device=points.device)
    groups = [g for g in range(coarse_k) if int(sizes[g]) > 0]
    # many small problems: one thread per problem beats intra-op threading (and its spin-waits)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for group, c, lab in pool.map(fine, groups):
                off, kg = int(offsets[group]), int(alloc[group])
                centroids[off : off + kg] = c
                labels[order[int(starts[group]) : int(starts[group] + sizes[group])]] = lab + off
    finally:
        torch.set_num_threads(threads)
    return centroids, labels


def kmeans(
    points: torch.Tensor,
    k: int,
    iterations: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    method: str = "auto",
) -> KMeansResult:
    """Cluster `points` (N, D) into `k` centroids; `device` None means CUDA when available."""
    if method not in ("auto", "flat", "two_level"):
        raise ValueError(f"unknown k-means method {method!r}; use auto, flat or two_level")
    if k < 1 or len(points) < 1:
        raise ValueError(f"k-means needs k >= 1 and at least one point (k={k}, n={len(points)})")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = points.to(dev, dtype=torch.float32).contiguous()
    if method == "auto":
        work = float(len(x)) * k * x.shape[1] * max(iterations, 1)
        method = "flat" if dev.type == "cuda" or work <= FLAT_WORK_LIMIT else "two_level"
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if method == "flat":
            centroids, labels = flat_kmeans(x, k, iterations, generator)
        else:
            centroids, labels = two_level_kmeans(x, k, iterations, generator, seed)
    return KMeansResult(centroids.float().cpu(), labels.cpu(), method)
