"""Benchmark the splat trainer on colmap exports: wall seconds from process start to PLY written, it/s, peak
GPU memory, Gaussians, and the headline figures of the published PLY (test views, plain renders: PSNR, SSIM,
mean alpha, flat mean-colour PSNR; colour-corrected PSNR as secondary). Each run is a fresh
`python -m spaceport_dagster.stages.train` process, so data loading (and any start-up cost) is included.

    python benchmarks/train.py --exports .devdata/exports --datasets brighton_beach lund --preset standard \
        --variant plain='{}' affine='{"appearance":"affine"}' --jobs 2 --json results.json

`--jobs N` runs N trainings at once (on one GPU they share it: wall times are then not comparable with a
lone run, only the quality figures are). `--plain-eval PATH` also scores each PLY with that scorer
(the peer harness's plain_eval.py), so ours and the reference trainer's are judged by one renderer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from md_table import markdown_table

SCORER_KEYS = {"psnr_black": "scorer_psnr", "ssim_black": "scorer_ssim", "alpha_mean": "scorer_alpha",
               "psnr_flat_mean_colour": "scorer_flat_psnr"}


def plain_eval(scorer: Path, ply: Path, export: Path) -> dict[str, Any]:
    """The peer harness's scorer on one of our PLYs (export frame); {} with an error when it fails."""
    root = Path(__file__).resolve().parents[1]
    pythonpath = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(scorer), str(ply), str(export), "--label", "ours"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": pythonpath})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("PLAIN ")), None)
    if line is None:
        return {"scorer_error": proc.stderr[-400:]}
    scored = json.loads(line[len("PLAIN "):])
    return {ours: round(scored[theirs], 4) for theirs, ours in SCORER_KEYS.items() if theirs in scored}


def run_one(export: Path, preset: str, steps: int | None, name: str, overrides: dict[str, Any], workdir: Path,
            scorer: Path | None, gpu: str | None = None) -> dict[str, Any]:
    out = workdir / f"{export.name}-{name}-{steps or preset}"
    config = {"preset": preset, **({"steps": steps} if steps else {}), **overrides}
    cmd = [sys.executable, "-m", "spaceport_dagster.stages.train", "--input", f"export={export}",
           "--output", str(out), "--config", json.dumps(config)]
    t0 = time.perf_counter()
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    (workdir / f"{out.name}.log").write_text(proc.stderr)
    if proc.returncode not in (0, 1):  # 1 = a blocking check failed; the figures are still wanted
        sys.stderr.write(proc.stderr[-4000:])
        return {"dataset": export.name, "variant": name, "error": proc.stderr[-500:]}
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["summary"]
    checks = json.loads(proc.stdout)["checks"] if proc.stdout.strip().startswith("{") else []
    row = {
        "dataset": export.name, "variant": name, "steps": s["steps"], "process_wall_s": round(wall, 1),
        "to_ply_s": round(wall - (s["wall_seconds"] - s["seconds"]["to_ply_written"]), 1),
        "train_loop_s": s["train_seconds"], "it_per_s": round(s["steps"] / max(s["train_seconds"], 1e-9), 1),
        "peak_gpu_mem_mb": s["peak_gpu_mem_mb"], "gaussians": s["gaussians"],
        "psnr": round(s["psnr"], 2), "ssim": round(s["ssim"], 3), "alpha": round(s["alpha_mean"], 3),
        "flat_psnr": round(s["baseline_psnr"], 2), "cc_psnr": round(s["psnr_colour_corrected"], 2),
        "ply_mb": round(s["ply_bytes"] / 2**20, 1), "resolution": s["resolution"],
        "views": f"{s['train_views']}/{s['validation_views']}/{s['test_views']}", "device": s["device"],
        "failed_checks": [c["name"] for c in checks if not c["passed"]],
        "config": {"preset": preset, **overrides}, "seconds": s.get("seconds"), "evals": metrics["evals"],
        "output": str(out),
    }
    if scorer is not None:
        row.update(plain_eval(scorer, out / "point_cloud.ply", export))
    return row


COLUMNS = ["dataset", "variant", "steps", "to_ply_s", "train_loop_s", "gaussians", "psnr", "ssim", "alpha",
           "flat_psnr", "cc_psnr", "scorer_psnr", "ply_mb", "resolution", "views", "failed_checks"]


def table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(COLUMNS, ([r.get(c) for c in COLUMNS] for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exports", type=Path, default=Path(".devdata/exports"))
    ap.add_argument("--datasets", nargs="+", default=["brighton_beach", "lund", "banana"])
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--steps", nargs="*", type=int, default=[], help="step counts (default: the preset's)")
    ap.add_argument("--variant", nargs="*", default=["preset={}"], metavar="NAME=JSON",
                    help="config overrides per variant, e.g. affine='{\"appearance\":\"affine\"}'")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--plain-eval", type=Path, default=None, help="also score each PLY with this plain_eval.py")
    ap.add_argument("--json", type=Path, default=Path("train_benchmark.json"))
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    variants = [(v.split("=", 1)[0], json.loads(v.split("=", 1)[1])) for v in args.variant]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="train-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [(args.exports / d, s, name, o) for d in args.datasets for s in (args.steps or [None]) for name, o in variants]
    rows: list[dict[str, Any]] = []

    def one(job: tuple[Path, int | None, str, dict[str, Any]]) -> None:
        export, steps, name, overrides = job
        row = run_one(export, args.preset, steps, name, overrides, workdir, args.plain_eval)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("evals", "seconds", "config")}), flush=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                         "jobs": args.jobs, "runs": rows}, indent=1))

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, jobs))
    rows.sort(key=lambda r: (r["dataset"], r["variant"]))
    print(table(rows))


if __name__ == "__main__":
    main()
