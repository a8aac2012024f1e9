"""Benchmark tiled training against one training on the same export and preset (issue 24).

Trains the export once as a single training, then as K spatial tiles (the train stage with a tile spec, as the
splat_model asset runs them), merges the tiles with the merge stage, and scores both published PLYs with the
same plain evaluation (test views, black background, no colour model; `stages/evaluation.py`). With several
GPUs the tiles train in parallel, one per GPU; with one they train one after the other, and the projected
K-GPU wall time is the longest tile plus the merge. Every training is a fresh process (data loading included);
stage code only, so it runs without dagster (or dagster_pipes) installed.

    python benchmarks/tiles.py --export EXPORT_DIR --preset standard --tiles 4 \\
        --json benchmarks/results/h100_tiles_standard.json

Options: `--steps N` overrides the preset's steps (single and every tile alike), `--tile-steps N` the tiles'
alone (steps / K: the same total steps as the single training); `--gpus 0,1,2,3` chooses the
GPUs (default: every visible one); `--margin` (photo footprints) as the asset's default; `--workdir` keeps
the outputs (default: a temporary folder, kept and printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from queue import Queue
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.md_table import markdown_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def worker(job: dict[str, Any]) -> int:
    """One training in this process: `python benchmarks/tiles.py --worker JSON`."""
    from spaceport_dagster.stages.train.stage import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = run({"export": job["export"]}, Path(job["output"]), job["config"], logging.getLogger("train"))
    return 1 if any(c.blocking and not c.passed for c in report.checks) and not job.get("tile") else 0


def train_process(export: Path, output: Path, config: dict[str, Any], gpu: str | None, log_file: Path) -> dict[str, Any]:
    job = {"export": str(export), "output": str(output), "config": config, "tile": "tile" in config}
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    start = time.perf_counter()
    with open(log_file, "w") as log:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], stdout=log, stderr=log, env=env)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1) or not (output / "metrics.json").is_file():
        raise SystemExit(f"training into {output} failed (exit {proc.returncode}); see {log_file}")
    summary = json.loads((output / "metrics.json").read_text())["summary"]
    return {"process_wall_s": round(wall, 1), "gpu": gpu, **summary}


def visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in listed.split(",")] if listed else [str(i) for i in range(torch.cuda.device_count())]
    return ids[: torch.cuda.device_count()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--steps", type=int, default=0, help="steps of the single training and every tile")
    parser.add_argument("--tile-steps", type=int, default=0,
                        help="steps of each tile instead (e.g. steps / K: the same total steps as the single one)")
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids (default: every visible GPU)")
    parser.add_argument("--options", default="{}", help="JSON train options for both (e.g. '{\"seed\": 1}')")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--skip-single", action="store_true", help="tiles only (reuse --workdir's single run)")
    parser.add_argument("--json", type=Path, default=RESULTS / "tiles.json")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.export is None or not (args.export / "sparse" / "0").is_dir():
        parser.error("--export must be a colmap_export folder (images/ and sparse/0/)")

    from spaceport_dagster.stages.colmap_io import read_model
    from spaceport_dagster.stages.merge.stage import run as merge
    from spaceport_dagster.stages.tiles.partition import TileOptions, partition
    from spaceport_dagster.stages.train.config import load_config

    gpus = [g for g in args.gpus.split(",") if g] if args.gpus else visible_gpus()
    config = {"preset": args.preset, **json.loads(args.options), **({"steps": args.steps} if args.steps else {})}
    cfg = load_config(dict(config))
    tiles = partition(read_model(args.export / "sparse" / "0"), args.tiles,
                      TileOptions(margin=args.margin, test_every=cfg.test_every, max_long_side=cfg.max_long_side))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tiles-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    first_gpu = gpus[0] if gpus else None
    print(f"{len(tiles)} tiles ({', '.join(f'{len(t.photos)} photos' for t in tiles)}); GPUs: {gpus or 'none'}; "
          f"outputs in {workdir}", flush=True)

    single_out = workdir / "single"
    if args.skip_single and (single_out / "metrics.json").is_file():
        single = {"process_wall_s": None, **json.loads((single_out / "metrics.json").read_text())["summary"]}
    else:
        single = train_process(args.export, single_out, config, first_gpu, workdir / "single.log")
    print(f"single: {single['process_wall_s']} s, PSNR {single['psnr']:.2f} dB", flush=True)

    tile_config = {**config, **({"steps": args.tile_steps} if args.tile_steps else {})}
    slots: Queue[str | None] = Queue()
    for gpu in (gpus or [None]):
        slots.put(gpu)

    def one(tile: Any) -> dict[str, Any]:
        gpu = slots.get()
        try:
            row = train_process(args.export, workdir / tile.key, {**tile_config, "tile": tile.as_dict()}, gpu,
                                workdir / f"{tile.key}.log")
        finally:
            slots.put(gpu)
        print(f"{tile.label}: {row['process_wall_s']} s on GPU {gpu}", flush=True)
        return {**row, "tile": tile.index, "photos": len(tile.photos)}

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(len(gpus), 1)) as pool:
        tile_rows = list(pool.map(one, tiles))
    tiles_wall = time.perf_counter() - start
    merge_start = time.perf_counter()
    inputs = {"export": str(args.export), **{t.key: str(workdir / t.key) for t in tiles}}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = merge(inputs, workdir / "merged", {**tile_config, "seam": "trim"}, logging.getLogger("merge"))
    merge_wall = time.perf_counter() - merge_start
    merged = json.loads((workdir / "merged" / "metrics.json").read_text())["summary"]
    longest = max(r["process_wall_s"] for r in tile_rows)
    parallel = len(gpus) >= 2
    record = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "gpus": gpus, "device": single.get("device"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "load_average": os.getloadavg(),
        "export": str(args.export), "preset": args.preset, "config": config, "tiles": len(tiles),
        "tiles_ran": "in parallel, one per GPU" if parallel else "one after the other",
        "single": single, "tile_runs": tile_rows, "merged": merged,
        "merge_stage_wall_s": round(merge_wall, 1), "merge_seconds": merged["merge_seconds"],
        "tiles_wall_s": round(tiles_wall, 1), "single_steps": single["steps"],
        "tile_steps_total": sum(r["steps"] for r in tile_rows),
        "projected_k_gpu_wall_s": round(longest + merge_wall, 1),
        "measured_tiled_wall_s": round(tiles_wall + merge_wall, 1) if parallel else None,
        "psnr_difference_db": round(merged["psnr"] - single["psnr"], 3),
        "failed_gates": [c.name for c in report.checks if c.blocking and not c.passed],
        "workdir": str(workdir),
    }
    columns = ["run", "photos", "steps", "wall s", "train loop s", "Gaussians", "PSNR", "SSIM", "alpha",
               "peak GPU MB"]
    rows = [["single", single.get("train_views"), single["steps"], single["process_wall_s"], single["train_seconds"],
             single["gaussians"], round(single["psnr"], 2), round(single["ssim"], 3), round(single["alpha_mean"], 3),
             single.get("peak_gpu_mem_mb")]]
    rows += [[f"tile {r['tile']}/{len(tiles)}", r["photos"], r["steps"], r["process_wall_s"], r["train_seconds"],
              r["gaussians"], None, None, None, r.get("peak_gpu_mem_mb")] for r in tile_rows]
    rows.append([f"merged ({record['tiles_ran']})", merged["train_views"], merged["steps"],
                 record["measured_tiled_wall_s"], None, merged["gaussians"], round(merged["psnr"], 2),
                 round(merged["ssim"], 3), round(merged["alpha_mean"], 3), None])
    print(markdown_table(columns, rows))
    print(f"\nmerge stage {merge_wall:.1f} s (merge and write {merged['merge_seconds']} s); projected {len(tiles)}-GPU "
          f"wall time (longest tile + merge) {record['projected_k_gpu_wall_s']} s against "
          f"{single['process_wall_s']} s single; merged - single PSNR {record['psnr_difference_db']:+.2f} dB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
