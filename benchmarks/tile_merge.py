"""Benchmark the tile merge: K tile PLYs of a synthetic splat (SH degree 3, a margin of overlap), merged as the
merge stage does (read every tile's PLY, keep each tile's core, trim the seams, write one PLY), timed per phase.
Target (issue 24): under 30 s for 5M merged Gaussians. CPU only, numpy + plyfile.

    python benchmarks/tile_merge.py                       # 5M merged Gaussians from 4 tiles
    python benchmarks/tile_merge.py --gaussians 1000000 --tiles 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.md_table import markdown_table  # noqa: E402
from spaceport_dagster.stages.ply import GaussianCloud, read_ply, write_ply  # noqa: E402
from spaceport_dagster.stages.tiles.merge import merge_files  # noqa: E402
from spaceport_dagster.stages.tiles.spec import Cell, TileSpec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def strip_tiles(k: int, width: float = 100.0, margin: float = 5.0) -> list[TileSpec]:
    """K strips across [0, width) in x, each expanded by `margin`."""
    cuts = np.linspace(0, width, k + 1)
    tiles = []
    for i in range(k):
        lo = None if i == 0 else float(cuts[i])
        hi = None if i == k - 1 else float(cuts[i + 1])
        core = Cell(lo, hi, None, None)
        tiles.append(TileSpec(i + 1, k, core, core.grown(margin, margin), []))
    return tiles


def tile_cloud(n: int, x0: float, x1: float, rng: np.random.Generator) -> GaussianCloud:
    means = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(0, 100, n), rng.normal(0, 1, n)]).astype(np.float32)
    return GaussianCloud(means, rng.normal(0, 1, (n, 3)).astype(np.float32),
                         rng.normal(0, 0.1, (n, 15, 3)).astype(np.float32), rng.normal(0, 2, n).astype(np.float32),
                         rng.normal(-3, 0.5, (n, 3)).astype(np.float32), rng.normal(0, 1, (n, 4)).astype(np.float32))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=5_000_000, help="merged Gaussians (about)")
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--workdir", default="", help="where the tile PLYs are written (default: a temp folder)")
    parser.add_argument("--json", default=str(RESULTS / "cpu_tile_merge_5m.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tiles = strip_tiles(args.tiles)
    width, margin = 100.0, 5.0
    with tempfile.TemporaryDirectory(prefix="tile-merge-", dir=args.workdir or None) as tmp:
        paths = []
        for spec in tiles:
            lo = (spec.expanded.xmin if spec.expanded.xmin is not None else -margin)
            hi = (spec.expanded.xmax if spec.expanded.xmax is not None else width + margin)
            core_share = (width / args.tiles) / (hi - lo)
            n = round(args.gaussians / args.tiles / core_share)  # trained over the expanded cell
            path = Path(tmp) / f"{spec.key}.ply"
            write_ply(path, tile_cloud(n, lo, hi, rng))
            paths.append((spec, path))
        trained = sum(len(read_ply(p)) for _, p in paths[:1]) * args.tiles
        os.sync()
        start = time.perf_counter()
        stats, size = merge_files(paths, Path(tmp) / "merged.ply")
        seconds = time.perf_counter() - start
        check = read_ply(Path(tmp) / "merged.ply") if stats.gaussians <= 2_000_000 else None
    row = {"tiles": args.tiles, "trained_gaussians_about": trained, "merged_gaussians": stats.gaussians,
           "seam_trimmed": sum(t.seam_trimmed for t in stats.tiles), "ply_mb": round(size / 2**20, 1),
           "merge_seconds": round(seconds, 2)}
    if check is not None and len(check) != stats.gaussians:
        raise SystemExit(f"the merged PLY reads back {len(check)} Gaussians, expected {stats.gaussians}")
    print(markdown_table(list(row), [list(row.values())]))
    record = {"machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "load_average": os.getloadavg(), **row}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
