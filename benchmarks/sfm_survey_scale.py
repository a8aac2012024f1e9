"""SfM on synthetic drone surveys of growing size, against their ground truth.

    .venv/bin/python benchmarks/sfm_survey_scale.py --photos 40 150 300 [--size 1600x1200] \
        [--altitude-drift 100] [--gps-noise 5] [--surveys DIR] [--preset fast] [--export] [--json out.json]

Each survey is rendered once into DIR (kept, reused while its settings match), ingested, and reconstructed
by the sparse_reconstruction stage in its own process (so its peak memory is its own). Per survey: wall and
CPU seconds per step, registered images, points, peak resident memory, and the published frame against the
truth (up error, scale error against the GPS-implied one and the reported uncertainty, camera centres after
the best rigid alignment). With `--export` the
colmap_export stage runs on the result too (its image size, and the size each training preset would train
at). The survey's photos are hashed before and after: the row says whether they came out unchanged. Prints a
Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_table import markdown_table  # noqa: E402
from sfm import machine  # noqa: E402

STEPS = ("features", "matching", "mapping", "georegistration")


def survey_dir(root: Path, photos: int, size: str, drift: float, noise: float, render_scale: int) -> Path:
    scale = f"-render1of{render_scale}" if render_scale > 1 else ""
    return root / f"survey-{photos}-{size}-drift{drift:g}-noise{noise:g}{scale}"


def generate(out: Path, photos: int, width: int, height: int, drift: float, noise: float, render_scale: int) -> float:
    from spaceport_dagster.demo.survey import generate_survey, is_current
    from spaceport_dagster.demo.variants import survey_for

    spec = survey_for(photos, width, height, altitude_drift_m=drift, horizontal_noise_m=noise,
                      render_scale=render_scale)
    if is_current(out, spec):
        return 0.0
    start = time.perf_counter()
    generate_survey(out, spec)
    return time.perf_counter() - start


def photo_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)


def run_export(sparse: Path, image_set: Path, out: Path) -> dict[str, Any]:
    """The colmap_export stage with its defaults (no pipeline preset changes them), and the training size."""
    from PIL import Image

    from spaceport_dagster.stages.export.stage import run as export_run

    start = time.perf_counter()
    report = export_run({"sparse": str(sparse), "image_set": str(image_set)}, out, {}, logging.getLogger("bench"))
    seconds = time.perf_counter() - start
    peak = peak_rss_gb()  # before the training modules bring torch in
    from spaceport_dagster.stages.train.config import PRESETS, load_config
    from spaceport_dagster.stages.train.data import target_size

    first = sorted((out / "images").iterdir())[0]
    with Image.open(first) as im:
        width, height = im.size
    train = {name: "x".join(map(str, target_size(width, height, load_config({"preset": name}).max_long_side)))
             for name in PRESETS}
    return {"export_s": round(seconds, 1), "export_image_size": report.metadata["image_size"],
            "export_checks": {c.name: c.passed for c in report.checks}, "train_image_size": train,
            "peak_rss_after_export_gb": peak}


def run_one(survey: Path, work: Path, preset: str, overrides: dict[str, Any], with_export: bool = False) -> dict[str, Any]:
    """Ingest and SfM (and export) one survey in this process; returns the row (peak memory of this process)."""
    import numpy as np

    from spaceport_dagster.demo.truth_check import compare_frame, umeyama
    from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
    from spaceport_dagster.stages.sfm.stage import run

    log = logging.getLogger("bench")
    image_set = work / "image_set"
    before = photo_hashes(survey / "images")
    ingest_s = 0.0
    if not (image_set / "manifest.json").is_file():
        start = time.perf_counter()
        ingest(str(survey / "images"), image_set, IngestConfig(), log)
        ingest_s = time.perf_counter() - start
    rss_after_ingest = peak_rss_gb()
    start = time.perf_counter()
    report = run({"image_set": str(image_set)}, work / "sparse", {"preset": preset, **overrides}, log)
    wall = time.perf_counter() - start
    saved = json.loads((work / "sparse" / "report.json").read_text())
    truth = json.loads((survey / "truth.json").read_text())
    m = report.metadata
    row: dict[str, Any] = {
        "photos": len(truth["images"]), "size": f"{truth['camera']['width']}x{truth['camera']['height']}",
        "render_scale": truth["fingerprint"].get("render_scale", 1),
        "registered": m["registered"], "points": m["points"], "matcher": m["matcher"], "mapper": m["mapper"],
        "verified_pairs": saved.get("database", {}).get("verified_pairs"),
        "ingest_s": round(ingest_s, 1) if ingest_s else "reused",
        **{f"{s}_s": m.get(f"seconds_{s}") for s in STEPS}, "total_s": round(wall, 1),
        "cpu_s": round(sum(saved.get("cpu_seconds", {}).values()), 1),
        "peak_rss_gb": peak_rss_gb(), "peak_rss_after_ingest_gb": rss_after_ingest,
        "frame": m["georegistration_frame"], "gps_altitude_used": m["gps_altitude_used"],
        "horizontal_rms_m": m["georegistration_horizontal_rms_m"], "vertical_rms_m": m["georegistration_vertical_rms_m"],
        "georegistered": m["georegistered"], "gps_outliers": m["gps_outliers"],
        "scale_uncertainty_pct": m.get("georegistration_scale_uncertainty_pct"),
        "heading_uncertainty_deg": m.get("georegistration_heading_uncertainty_deg"), "gps_noise_m": m.get("gps_noise_m"),
        "georegistration_warnings": saved["georegistration"].get("warnings", []),
        "checks": {c.name: c.passed for c in report.checks},
    }
    try:
        frame = compare_frame(work / "sparse" / "sparse", saved, truth)
        row.update(up_error_deg=round(frame.up_error_deg, 3), scale_error_pct=round(100 * (frame.scale_ratio - 1), 2),
                   rigid_rms_m=round(frame.rigid_rms_m, 3),
                   rigid_rms_pct_of_height=round(100 * frame.rigid_rms_m / frame.altitude_m, 2))
    except ValueError as exc:
        row["truth"] = str(exc)
    # the best any method can do from these fixes: the scale of the best 2D similarity from true to written
    true = np.array([[*r["centre_enu"][:2], 0.0] for r in truth["images"]])
    written = true + np.array([[*r["gps"]["error_enu"][:2], 0.0] for r in truth["images"]])
    row["gps_implied_scale_error_pct"] = round(100 * (umeyama(true, written, with_scale=True)[0] - 1), 2)
    if with_export:
        row.update(run_export(work / "sparse", image_set, work / "export"))
    after = photo_hashes(survey / "images")
    row["photos_unchanged"] = before == after
    row["photos_sha256_of_hashes"] = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    return row


COLUMNS = ["photos", "size", "registered", "points", "matcher / mapper", "verified pairs", "features s", "matching s",
           "mapping s", "total s", "CPU s", "peak RSS GB", "frame", "up error deg", "scale error % (GPS-implied)",
           "reported ± scale % / heading deg", "GPS outliers", "rigid RMS m (% of height)", "upright"]


def table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(COLUMNS, ([
        r["photos"], r["size"], r["registered"], f"{r['points']:,}", f"{r['matcher']} / {r['mapper']}",
        r.get("verified_pairs"), r["features_s"], r["matching_s"], r["mapping_s"], r["total_s"], r["cpu_s"],
        r["peak_rss_gb"], r["frame"], r.get("up_error_deg"),
        f"{r.get('scale_error_pct')} ({r.get('gps_implied_scale_error_pct')})",
        f"{r.get('scale_uncertainty_pct')} / {r.get('heading_uncertainty_deg')}", r.get("gps_outliers"),
        f"{r.get('rigid_rms_m')} ({r.get('rigid_rms_pct_of_height')} %)", r["checks"].get("upright")] for r in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, nargs="+", default=[40, 150, 300])
    parser.add_argument("--size", default="1600x1200")
    parser.add_argument("--altitude-drift", type=float, default=100.0)
    parser.add_argument("--gps-noise", type=float, default=5.0)
    parser.add_argument("--render-scale", type=int, default=1,
                        help="render at 1/N of the size and resize (cheaper surveys; detail of the small render)")
    parser.add_argument("--surveys", type=Path, default=Path(".devdata/bench-surveys"))
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="SfmConfig override")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--export", action="store_true", help="run the colmap_export stage on each result too")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: run one survey, print its row
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/sfm_survey_scale.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.one:
        row = run_one(args.one, args.one / f"work-{args.preset}", args.preset, overrides, args.export)
        print("ROW " + json.dumps(row))
        return 0
    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    for photos in args.photos:
        survey = survey_dir(args.surveys, photos, args.size, args.altitude_drift, args.gps_noise, args.render_scale)
        seconds = generate(survey, photos, width, height, args.altitude_drift, args.gps_noise, args.render_scale)
        status = f"rendered in {seconds:.0f} s" if seconds else "reused"
        print(f"survey {survey.name}: {status}", file=sys.stderr, flush=True)
        if args.generate_only:
            continue
        cmd = [sys.executable, __file__, "--one", str(survey), "--preset", args.preset,
               *(f"--set={item}" for item in args.set), *(["--export"] if args.export else [])]
        load = os.getloadavg()[0]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        row = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("ROW "))[4:])
        row["load_avg_1min_before"] = round(load, 2)
        rows.append(row)
        print(table(rows[-1:]), file=sys.stderr, flush=True)
    if rows:
        info = machine()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "settings": vars(args) | {"surveys": str(args.surveys),
                                         "json": str(args.json), "one": None}, "results": rows}, indent=2))
        print(f"{info['date']}  {info['cores']} cores  {info['cpu']}  load after {info['load_avg_1_5_15']}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
