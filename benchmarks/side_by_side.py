"""Ours against gsplat's reference trainer on the same exports, in one device run, one GPU each, every PLY
scored by one plain renderer (the peer harness's plain_eval.py: test views = every 8th registered image by
name, black background, no colour model).

On a two-GPU machine, with the peer harness copied to .peer/ (see ../shared/peer/README.md):

    python benchmarks/side_by_side.py --exports .devdata/exports --peer .peer --out results/ \
        --datasets brighton_beach lund banana --peer-steps 7000 30000

Lane "ours" (GPU 0): `python -m spaceport_dagster.stages.train` with `--preset` per dataset, one at a time.
Lane "peer" (GPU 1): `run_peer.sh EXPORT RESULT STEPS` per dataset and step count, one at a time; with
`--peer-parallel-long` the runs of 30k steps and more go at once (their wall times are then shared-GPU ones).
Prints a markdown table and writes side_by_side.json; the rows keep each trainer's own timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as ours_bench  # noqa: E402  (benchmarks/train.py)
from md_table import markdown_table  # noqa: E402

PEER_LINE = re.compile(r"^PEER \S+ (.*)$")


def scored(scorer: Path, ply: Path, export: Path, frame: str, peer_dir: Path, gpu: str) -> dict[str, Any]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
    root = str(Path(__file__).resolve().parents[1])
    if frame == "peer":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(peer_dir), os.environ.get("PYTHONPATH", "")]))
        extra = ["--frame", "peer", "--peer-examples", str(peer_dir / "examples")]
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))
        extra = []
    proc = subprocess.run([sys.executable, str(scorer), str(ply), str(export), *extra], capture_output=True,
                          text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("PLAIN ")), None)
    if line is None:
        return {"scorer_error": (proc.stderr or proc.stdout)[-600:]}
    s = json.loads(line[len("PLAIN "):])
    return {"psnr": round(s["psnr_black"], 2), "ssim": round(s["ssim_black"], 3), "alpha": round(s["alpha_mean"], 3),
            "flat_psnr": round(s["psnr_flat_mean_colour"], 2), "psnr_mean_bg": round(s["psnr_mean"], 2)}


def run_ours(export: Path, preset: str, overrides: dict[str, Any], work: Path, scorer: Path, peer_dir: Path,
             gpu: str) -> dict[str, Any]:
    row = ours_bench.run_one(export, preset, None, preset, overrides, work, None, gpu)
    if "error" in row:
        return {"trainer": "ours", **row}
    out = {"trainer": f"ours {preset}", "dataset": export.name, "steps": row["steps"], "wall_s": row["to_ply_s"],
           "process_wall_s": row["process_wall_s"], "gaussians": row["gaussians"],
           "stage_psnr": row["psnr"], "stage_alpha": row["alpha"], "cc_psnr": row["cc_psnr"],
           "failed_checks": row["failed_checks"]}
    out.update(scored(scorer, Path(row["output"]) / "point_cloud.ply", export, "colmap", peer_dir, gpu))
    return out


def run_peer(export: Path, steps: int, work: Path, scorer: Path, peer_dir: Path, gpu: str) -> dict[str, Any]:
    result = work / f"peer-{export.name}-{steps}"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "PEER_SAVE_PLY": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(peer_dir / "run_peer.sh"), str(export), str(result), str(steps)],
                          capture_output=True, text=True, env=env)
    (work / f"peer-{export.name}-{steps}.log").write_text(proc.stdout[-20000:] + proc.stderr[-20000:])
    line = next((m.group(1) for x in proc.stdout.splitlines() if (m := PEER_LINE.match(x))), "")
    fields = dict(kv.split("=", 1) for kv in line.split())
    row: dict[str, Any] = {"trainer": "gsplat simple_trainer", "dataset": export.name, "steps": steps,
                           "wall_s": fields.get("wall_s"), "train_s": fields.get("train_s"),
                           "gaussians": fields.get("gaussians"), "own_eval_psnr": fields.get("psnr"),
                           "harness_seconds": round(time.perf_counter() - t0, 1)}
    ply = result / "ply" / f"point_cloud_{steps - 1}.ply"
    if proc.returncode != 0 or not ply.is_file():
        row["error"] = (proc.stderr or proc.stdout)[-600:]
        return row
    row.update(scored(scorer, ply, export, "peer", peer_dir, gpu))
    return row


COLUMNS = ["dataset", "trainer", "steps", "wall_s", "gaussians", "psnr", "ssim", "alpha", "flat_psnr",
           "psnr_mean_bg", "own_eval_psnr", "stage_psnr", "cc_psnr"]


def table(rows: list[dict[str, Any]]) -> str:
    ordered = sorted(rows, key=lambda r: (r["dataset"], r["trainer"], int(r.get("steps") or 0)))
    return markdown_table(COLUMNS, ([r.get(c) for c in COLUMNS] for r in ordered))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exports", type=Path, default=Path(".devdata/exports"))
    ap.add_argument("--peer", type=Path, default=Path(".peer"))
    ap.add_argument("--datasets", nargs="+", default=["brighton_beach", "lund", "banana"])
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--overrides", default="{}", help="JSON overrides of our preset")
    ap.add_argument("--peer-steps", nargs="*", type=int, default=[7000, 30000])
    ap.add_argument("--peer-parallel-long", action="store_true")
    ap.add_argument("--lanes", nargs="+", choices=["ours", "peer"], default=["ours", "peer"])
    ap.add_argument("--ours-gpu", default="0")
    ap.add_argument("--peer-gpu", default="1")
    ap.add_argument("--out", type=Path, default=Path("side_by_side"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("SIDE_BY_SIDE_WORK", "/tmp/side_by_side"))
    work.mkdir(parents=True, exist_ok=True)
    scorer = args.peer / "plain_eval.py"
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(row: dict[str, Any]) -> None:
        with lock:
            rows.append(row)
            print(json.dumps(row), flush=True)
            (args.out / "side_by_side.json").write_text(json.dumps(
                {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, indent=1))

    def ours_lane() -> None:
        for d in args.datasets:
            record(run_ours(args.exports / d, args.preset, json.loads(args.overrides), work, scorer, args.peer,
                            args.ours_gpu))

    def peer_lane() -> None:
        short = [s for s in args.peer_steps if s < 30000]
        long = [s for s in args.peer_steps if s >= 30000]
        for s in short:
            for d in args.datasets:
                record(run_peer(args.exports / d, s, work, scorer, args.peer, args.peer_gpu))
        jobs = [(d, s) for s in long for d in args.datasets]
        with ThreadPoolExecutor(max_workers=len(jobs) if args.peer_parallel_long else 1) as pool:
            for row in pool.map(lambda j: run_peer(args.exports / j[0], j[1], work, scorer, args.peer, args.peer_gpu),
                                jobs):
                record(row)

    lanes = [threading.Thread(target={"ours": ours_lane, "peer": peer_lane}[lane]) for lane in args.lanes]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    text = table(rows)
    (args.out / "side_by_side.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
