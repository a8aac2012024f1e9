"""Time each SfM step of the sparse_reconstruction stage on real image sets.

    .venv/bin/python benchmarks/sfm.py ../shared/datasets/brighton_beach [more sets] \
        [--preset fast] [--set key=value ...] [--json out.json]

A dataset path is either an image_set artifact (images/ + manifest.json) or a folder of photos (or a folder
holding images/), which is ingested first (not timed). Prints one table row per dataset; writes JSON.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pycolmap
from md_table import markdown_table

from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
from spaceport_dagster.stages.sfm.stage import run

STEPS = ("features", "matching", "mapping", "georegistration")


def image_set_for(path: Path, scratch: Path, log: logging.Logger) -> Path:
    if (path / "manifest.json").is_file():
        return path
    source = path / "images" if (path / "images").is_dir() else path
    out = scratch / f"{path.name}-image_set"
    ingest(str(source), out, IngestConfig(), log)
    return out


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "load_avg_1_5_15": [round(x, 2) for x in load],
            "python": platform.python_version(), "pycolmap": pycolmap.__version__, "date": datetime.now(UTC).isoformat(timespec="seconds")}


def bench(paths: list[Path], preset: str, overrides: dict[str, Any], log: logging.Logger) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sfm-bench-") as tmp:
        scratch = Path(tmp)
        for path in paths:
            image_set = image_set_for(path, scratch, log)
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            out = scratch / f"{path.name}-sparse"
            report = run({"image_set": str(image_set)}, out, {"preset": preset, **overrides}, log)
            wall = time.perf_counter() - start
            cpu = json.loads((out / "report.json").read_text()).get("cpu_seconds", {})
            m = report.metadata
            rows.append({
                "dataset": path.name, "preset": preset, "overrides": overrides,
                "registered": m["registered"], "points": m["points"],
                "mean_track_length": m["mean_track_length"], "reprojection_px": m["mean_reprojection_error_px"],
                "matcher": m["matcher"], "georegistered": m["georegistered"],
                "georegistration_residual_m": m["georegistration_residual_m"],
                **{f"{s}_s": m.get(f"seconds_{s}") for s in STEPS},
                "total_s": round(wall, 2), "cpu_s": round(sum(cpu.values()), 1),
                "load_avg_1min_before": round(load_before, 2),
                "checks": {c.name: c.passed for c in report.checks},
            })
    return rows


COLUMNS = ["dataset", "preset", "registered", "points", "track", "reproj px", "matcher", "features s", "matching s",
           "mapping s", "georeg s", "total s", "CPU s", "GPS RMS m", "load"]


def table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(COLUMNS, ([
        r["dataset"], r["preset"], r["registered"], f"{r['points']:,}", f"{r['mean_track_length']:.2f}",
        r["reprojection_px"], r["matcher"], r["features_s"], r["matching_s"], r["mapping_s"], r["georegistration_s"],
        r["total_s"], r["cpu_s"], r["georegistration_residual_m"], r["load_avg_1min_before"]] for r in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="SfmConfig override")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/sfm-results.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = bench(args.datasets, args.preset, overrides, logging.getLogger("bench"))
    info = machine()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "commit": commit, "results": rows}, indent=2))
    print(f"{info['date']}  {info['cores']} cores  {info['cpu']}  load after {info['load_avg_1_5_15']}")
    if overrides:
        print(f"overrides on preset {args.preset}: {json.dumps(overrides)}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
