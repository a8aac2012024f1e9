"""Benchmark the nearest-centroid search that dominates the SOG palette k-means, on CUDA.

One Lloyd assignment of N SH vectors (45 values, from the synthetic splat) to k centroids, three ways: torch
float32 chunked matmul + min (the reference), torch float16 (distance blocks in half precision), and the
fused Triton kernel (several block shapes). Prints a table and writes JSON: milliseconds per assignment
(median of --repeats, after one warm-up call that also compiles the kernel) and how often the labels agree
with float32, with the worst relative distance excess of a disagreeing label. Then the whole k-means (10
Lloyd iterations, as the SOG writer runs it) end to end, and with --profile the CUDA kernels it spends time in.

    python benchmarks/kmeans_nearest.py --json nearest-h100.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from spaceport_dagster.stages.sog import fused_nearest  # noqa: E402
from spaceport_dagster.stages.sog.kmeans import assign, kmeans  # noqa: E402
from spaceport_dagster.stages.sog.synthetic import realistic_cloud  # noqa: E402

BLOCK_SHAPES = [(128, 128, 8), (128, 64, 4), (64, 128, 4), (128, 256, 8), (256, 128, 8), (64, 64, 4)]


def timed(fn, repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up (and kernel compile)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, result


def agreement(points: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor,
              reference_d: torch.Tensor) -> dict[str, float]:
    d = ((points - centroids[labels]) ** 2).sum(1)
    excess = (d - reference_d) / reference_d.clamp_min(1e-12)
    return {"agree": float((labels == reference).float().mean()), "max_rel_excess": float(excess.max()),
            "mean_d_ratio": float(d.double().sum() / reference_d.double().sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splats", type=int, default=1_000_000)
    p.add_argument("--palette", type=int, default=65_536)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="print the k-means' CUDA kernel times")
    p.add_argument("--json", default="kmeans-nearest.json")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA")
    cloud = realistic_cloud(args.splats, 3, seed=0)
    points = torch.from_numpy(cloud.shN.transpose(0, 2, 1).reshape(args.splats, 45).copy()).cuda()
    init = torch.randperm(args.splats, generator=torch.Generator().manual_seed(0))[: args.palette]
    centroids = points[init.cuda()].clone()
    rows: list[dict[str, Any]] = []
    ms, (ref, ref_d) = timed(lambda: assign(points, centroids), args.repeats)
    rows.append({"method": "torch float32", "ms": ms, "agree": 1.0, "max_rel_excess": 0.0, "mean_d_ratio": 1.0})
    half = points.half()
    ms, (labels, _) = timed(lambda: assign(points, centroids, half), args.repeats)
    rows.append({"method": "torch float16", "ms": ms, **agreement(points, centroids, labels, ref, ref_d)})
    if fused_nearest.available(points.device):
        fused = fused_nearest.FusedNearest(points)
        for bp, bc, warps in BLOCK_SHAPES:
            try:
                ms, labels = timed(partial(fused.labels, centroids, (bp, bc, warps)), args.repeats)
            except Exception as exc:  # a block shape the GPU cannot hold (shared memory)
                rows.append({"method": f"fused {bp}x{bc} w{warps}", "error": str(exc)[:200]})
                continue
            rows.append({"method": f"fused {bp}x{bc} w{warps}", "ms": ms,
                         **agreement(points, centroids, labels, ref, ref_d)})
    cpu_points = points.cpu()
    kmeans_s, _ = timed(lambda: kmeans(cpu_points, args.palette, 10, seed=0, device="cuda", method="flat"), 1)
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})",
              "splats": args.splats, "palette": args.palette, "dims": 45, "rows": rows,
              "kmeans_10_iterations_s": kmeans_s / 1000, "fused": fused_nearest.available(points.device)}
    print(f"nearest centroid, {args.splats} x {args.palette} x 45 on {result['machine']} ({result['date']})")
    print(f"{'method':<22} {'ms':>9} {'agree':>8} {'max rel excess':>15} {'mean d ratio':>13}")
    for r in rows:
        if "error" in r:
            print(f"{r['method']:<22} failed: {r['error']}")
            continue
        print(f"{r['method']:<22} {r['ms']:>9.1f} {r['agree']:>8.4f} {r['max_rel_excess']:>15.2e} "
              f"{r['mean_d_ratio']:>13.6f}")
    print(f"k-means, 10 iterations, CPU tensor in and out: {kmeans_s / 1000:.2f} s")
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            kmeans(cpu_points, args.palette, 10, seed=0, device="cuda", method="flat")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
