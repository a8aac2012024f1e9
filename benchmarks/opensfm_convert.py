"""Measure the OpenSfM -> COLMAP converter on the real OpenSfM fixtures; prints a Markdown table.

Run from the repository root: .venv/bin/python benchmarks/opensfm_convert.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import pycolmap

from spaceport_dagster.stages.opensfm.convert import convert

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared"
SETS = ("lund", "brighton_beach")


def native_loads(folder: Path) -> str:
    try:
        pycolmap.Reconstruction(str(folder))
    except Exception as exc:  # noqa: BLE001 - recording whatever pycolmap says
        return f"no ({type(exc).__name__})"
    return "yes"


def main() -> None:
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, pycolmap {pycolmap.__version__}\n")
    print("| set | OpenSfM reconstructions (images) | kept: images / points | converted: images / points / observations "
          "| obs. dropped > 4 px | points dropped (< 2 obs.) | mean reproj. error (pycolmap) | OpenSfM stats.json error "
          "| native export loads | convert time (median of 3) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in SETS:
        dataset = ROOT / "fixtures" / "opensfm" / name
        images = ROOT / "datasets" / name / "images"
        times, result = [], None
        for _ in range(3):
            start = time.perf_counter()
            result = convert(dataset, images)
            times.append(time.perf_counter() - start)
        assert result is not None
        rec = result.reconstruction
        rec.update_point_3d_errors()
        recs = json.loads((dataset / "reconstruction.json").read_text())
        stats = json.loads((dataset / "stats" / "stats.json").read_text())["reconstruction_statistics"]
        pieces = " + ".join(str(len(r["shots"])) for r in recs)
        print(f"| {name} | {len(recs)} ({pieces}) | {result.opensfm_images} / {result.opensfm_points} "
              f"| {rec.num_reg_images()} / {rec.num_points3D()} / {rec.compute_num_observations()} "
              f"| {result.observations_dropped_residual} | {result.points_dropped} "
              f"| {rec.compute_mean_reprojection_error():.3f} px | {stats['reprojection_error_pixels']:.3f} px "
              f"| {native_loads(dataset / 'native_colmap_export')} | {statistics.median(times):.2f} s |")


if __name__ == "__main__":
    main()
