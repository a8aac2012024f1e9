"""How much the splat_model quality gate has to spare: train each survey N times under CPU load and report the
worst margin of the published PLY over the gate (plain test-view PSNR minus the flat mean-colour image's PSNR
plus 3 dB), with every other blocking check.

    python benchmarks/gate_margin.py --export demo=/data/exports/demo --export lund=/data/exports/lund \
        --runs 10 --jobs 7 --threads-per-job 2 --load 2

Inputs are paths, so a bigger box needs neither the network nor the shared folder: `--export NAME=PATH` a
prepared colmap_export (its folder, with images/ and sparse/0/; training and scoring only), `--images NAME=PATH`
a folder of photos (ingested once; SfM and the export once per set, or once per run with `--sfm-per-run`, which
then measures SfM's own spread too), `--demo` the built-in synthetic survey, rendered here first (about a minute).
Prepared exports travel well: `cp -rL $SPACEPORT_HOME/artifacts/<dataset>/colmap_export <dest>/<dataset>`.

Each run is a fresh process per stage (`python -m spaceport_dagster.stages.<stage>`), like the pipeline's local
launcher, with `--threads-per-job` threads (OMP/MKL/torch, and pycolmap's num_threads). Run i uses seed i
(`--seed-mode vary`, the default: does the outcome depend on the seed's luck?) or seed 0 every time
(`--seed-mode same`: with deterministic training only SfM, when run per run, can change the result).
`--config JSON` overrides the training preset, so a change to it can be measured the same way first.
`--load K` keeps K busy processes spinning beside the runs (the issue's "two busy processes") and stops them
at the end. Prints a Markdown table per run and per set; writes JSON (machine, date, load, every figure) to
`benchmarks/results/` or `--json`; until then each finished run is a line of `<json>.runs.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from md_table import markdown_table

from spaceport_dagster.stages.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GATE_CHECK = "beats_mean_colour_baseline"
PROGRESS_LOCK = threading.Lock()


@dataclass
class Survey:
    name: str
    export: Path | None = None  # a prepared colmap_export
    image_set: Path | None = None  # an ingested image_set (SfM runs here)


def parse_pairs(values: list[str], flag: str) -> list[tuple[str, Path]]:
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{flag} takes NAME=PATH, not {value!r}")
        if not Path(path).is_dir():
            raise SystemExit(f"{flag} {name}: {path} is not a folder")
        pairs.append((name, Path(path).resolve()))
    return pairs


def thread_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "OMP_WAIT_POLICY": "PASSIVE", "GLOG_minloglevel": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}


def run_stage(stage: str, inputs: dict[str, Path], output: Path, config: dict[str, Any], threads: int,
              log: Path) -> tuple[int, dict[str, Any] | None, float]:
    """One stage in a fresh process -> (exit status, its JSON report or None, wall seconds)."""
    cmd = [sys.executable, "-m", f"spaceport_dagster.stages.{stage}", "--output", str(output),
           "--config", json.dumps(config)]
    for name, path in inputs.items():
        cmd += ["--input", f"{name}={path}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(threads), cwd=ROOT)
    wall = time.perf_counter() - t0
    log.write_text(proc.stderr)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    return proc.returncode, report, wall


def sfm_and_export(survey: Survey, work: Path, threads: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """SfM (fast preset, the preview's) and the export of `survey`'s image_set into `work`."""
    sparse, export = work / "sparse_reconstruction", work / "colmap_export"
    rc, report, sfm_wall = run_stage("sfm", {"image_set": survey.image_set}, sparse,
                                     {"preset": "fast", "num_threads": threads, "random_seed": seed}, threads,
                                     work / "sfm.log")
    if rc != 0:
        raise RuntimeError(f"{survey.name}: SfM failed (exit {rc}); see {work / 'sfm.log'}")
    rc, _, export_wall = run_stage("export", {"sparse": sparse, "image_set": survey.image_set}, export, {},
                                   threads, work / "export.log")
    if rc != 0:
        raise RuntimeError(f"{survey.name}: export failed (exit {rc}); see {work / 'export.log'}")
    meta = (report or {}).get("metadata", {})
    return export, {"sfm_points": meta.get("points"), "sfm_registered": meta.get("registered"),
                    "sfm_seconds": round(sfm_wall, 1), "export_seconds": round(export_wall, 1)}


def train_and_score(survey: Survey, export: Path, work: Path, preset: str, seed: int, threads: int,
                    overrides: dict[str, Any]) -> dict[str, Any]:
    config = {"preset": preset, **overrides, "seed": seed}
    rc, report, wall = run_stage("train", {"export": export}, work / "splat_model", config, threads,
                                 work / "train.log")
    if report is None:
        return {"error": f"training exited {rc} without a report; see {work / 'train.log'}"}
    checks = {c["name"]: c for c in report.get("checks", [])}
    meta = report.get("metadata", {})
    value, flat = meta.get("psnr"), meta.get("baseline_psnr")
    threshold = None if flat is None else flat + load_config(dict(config)).baseline_margin_db
    return {
        "psnr": value, "gate": threshold, "flat_psnr": flat, "gate_passed": checks.get(GATE_CHECK, {}).get("passed"),
        "margin_db": None if value is None or threshold is None else value - threshold,
        "alpha": meta.get("alpha_mean"), "gaussians": meta.get("gaussians"),
        "nonfinite_removed": meta.get("nonfinite_gaussians_removed"),
        "failed_blocking": sorted(n for n, c in checks.items() if not c["passed"] and c.get("blocking", True)),
        "train_seconds": round(wall, 1), "exit": rc,
    }


def one_run(survey: Survey, index: int, seed: int, args: argparse.Namespace, scratch: Path,
            shared_exports: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    work = scratch / f"{survey.name}-{index:02d}"
    work.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"set": survey.name, "run": index, "seed": seed, "threads": args.threads_per_job}
    t0 = time.perf_counter()
    try:
        if survey.export is not None:
            export = survey.export
        elif args.sfm_per_run:
            export, sfm = sfm_and_export(survey, work, args.threads_per_job, seed)
            row.update(sfm)
        else:
            export, sfm = shared_exports[survey.name]
            row.update(sfm)
        row.update(train_and_score(survey, export, work, args.preset, seed, args.threads_per_job, args.config))
    except RuntimeError as exc:
        row["error"] = str(exc)
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    row["load_average"] = round(os.getloadavg()[0], 1)
    if row.get("margin_db") is None and "error" not in row:
        row["error"] = f"no PSNR in the training report (exit {row.get('exit')}); see {work / 'train.log'}"
    print(f"  {survey.name} run {index} (seed {seed}): " + (row.get("error") or
          f"{row['psnr']:.2f} dB, gate {row['gate']:.2f}, margin {row['margin_db']:+.2f} dB, "
          f"failed {row['failed_blocking'] or 'none'}, {row['wall_seconds']:.0f} s"), flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    with PROGRESS_LOCK, open(args.progress, "a") as fh:  # kept even if the whole benchmark is stopped early
        fh.write(json.dumps(row) + "\n")
    return row


def summarise(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        ok = [r for r in rows if r["set"] == name and "error" not in r]
        errors = sum(1 for r in rows if r["set"] == name and "error" in r)
        if not ok:
            out.append({"set": name, "runs": 0, "errors": errors})
            continue
        psnrs = [r["psnr"] for r in ok]
        points = [r["sfm_points"] for r in ok if r.get("sfm_points") is not None]
        out.append({
            "set": name, "runs": len(ok), "errors": errors, "psnr_min": min(psnrs), "psnr_max": max(psnrs),
            "psnr_spread": max(psnrs) - min(psnrs), "gate_min": min(r["gate"] for r in ok),
            "gate_max": max(r["gate"] for r in ok), "worst_margin_db": min(r["margin_db"] for r in ok),
            "runs_failing_a_blocking_check": sum(1 for r in ok if r["failed_blocking"]),
            "nonfinite_removed": sum(r.get("nonfinite_removed") or 0 for r in ok),
            "sfm_points": f"{min(points)}-{max(points)}" if points else None,
        })
    return out


def start_load(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def prepare(args: argparse.Namespace, scratch: Path) -> list[Survey]:
    surveys = [Survey(name, export=path) for name, path in parse_pairs(args.export, "--export")]
    photo_sets = parse_pairs(args.images, "--images")
    if args.demo:
        from spaceport_dagster.demo.command import ensure_survey

        ensure_survey(scratch / "demo-survey")
        photo_sets.append(("demo", scratch / "demo-survey" / "images"))
    for name, photos in photo_sets:
        image_set = scratch / f"{name}-image_set"
        rc, _, _ = run_stage("ingest", {"source": photos}, image_set, {}, args.threads_per_job,
                             scratch / f"{name}-ingest.log")
        if rc != 0:
            raise SystemExit(f"{name}: ingest of {photos} failed; see {scratch / f'{name}-ingest.log'}")
        surveys.append(Survey(name, image_set=image_set))
    names = [s.name for s in surveys]
    if len(set(names)) != len(names):
        raise SystemExit(f"survey names repeat: {names}")
    if not surveys:
        raise SystemExit("nothing to run: give --export NAME=PATH, --images NAME=PATH or --demo")
    return surveys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", action="append", default=[], metavar="NAME=PATH", help="a prepared colmap_export")
    parser.add_argument("--images", action="append", default=[], metavar="NAME=PATH", help="a folder of photos")
    parser.add_argument("--demo", action="store_true", help="render the built-in demo survey and include it")
    parser.add_argument("--runs", type=int, default=10, help="runs per survey (default 10)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--threads-per-job", type=int, default=2, help="threads per run (default 2)")
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the runs (default 2)")
    parser.add_argument("--preset", default="preview", help="the splat_model preset (default preview)")
    parser.add_argument("--seed-mode", choices=("vary", "same"), default="vary",
                        help="vary: run i uses seed first-seed + i; same: first-seed every run")
    parser.add_argument("--first-seed", type=int, default=0, help="the first run's seed (default 0)")
    parser.add_argument("--config", type=json.loads, default={},
                        help="JSON overrides of the training preset, to try a change (default none)")
    parser.add_argument("--sfm-per-run", action="store_true", help="SfM and export again in every run (photo sets)")
    parser.add_argument("--min-margin", type=float, default=1.0, help="dB the gate must have to spare (default 1)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default benchmarks/results/...)")
    parser.add_argument("--scratch", type=Path, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep each run's outputs in the work folder")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.jobs < 1 or args.threads_per_job < 1 or args.load < 0:
        raise SystemExit("--runs, --jobs and --threads-per-job must be at least 1, --load at least 0")

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="gate_margin-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()  # the code the runs use, read before they start
    out = args.json or ROOT / "benchmarks" / "results" / f"gate_margin_{platform.node()}_{started:%Y%m%dT%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    args.progress = out.with_suffix(".runs.jsonl")  # one line per finished run, as it finishes
    args.progress.unlink(missing_ok=True)
    load = start_load(args.load)
    try:
        surveys = prepare(args, scratch)
        shared: dict[str, tuple[Path, dict[str, Any]]] = {}
        if not args.sfm_per_run:
            for survey in (s for s in surveys if s.image_set is not None):
                shared[survey.name] = sfm_and_export(survey, scratch / f"{survey.name}-shared", args.threads_per_job, 0)
        tasks = [(s, i, args.first_seed + (i if args.seed_mode == "vary" else 0))
                 for i in range(args.runs) for s in surveys]
        print(f"gate_margin: {len(tasks)} runs ({len(surveys)} surveys x {args.runs}), {args.jobs} at once with "
              f"{args.threads_per_job} threads each, {args.load} busy processes beside them; work in {scratch}",
              flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda t: one_run(*t, args, scratch, shared), tasks))
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
        if args.scratch is None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    finished = datetime.now(UTC)
    summary = summarise(rows, [s.name for s in surveys])

    def f2(value: Any) -> Any:
        return None if value is None else f"{value:.2f}"

    print("\n" + markdown_table(
        ["set", "run", "seed", "SfM points", "PSNR dB", "gate dB", "margin dB", "alpha", "Gaussians",
         "non-finite removed", "failed blocking checks", "wall s"],
        [[r["set"], r["run"], r["seed"], r.get("sfm_points"), f2(r.get("psnr")), f2(r.get("gate")),
          None if r.get("margin_db") is None else f"{r['margin_db']:+.2f}", f2(r.get("alpha")), r.get("gaussians"),
          r.get("nonfinite_removed"), ", ".join(r.get("failed_blocking", [])) or r.get("error", "none"),
          r["wall_seconds"]] for r in rows]))
    print("\n" + markdown_table(
        ["set", "runs", "PSNR min-max dB", "spread dB", "gate dB", "worst margin dB", "runs failing",
         "non-finite removed", "SfM points"],
        [[s["set"], s["runs"] if not s.get("errors") else f"{s['runs']} ({s['errors']} errors)",
          None if not s["runs"] else f"{s['psnr_min']:.2f}-{s['psnr_max']:.2f}",
          f2(s.get("psnr_spread")),
          None if not s["runs"] else f"{s['gate_min']:.2f}" + ("" if s["gate_max"] - s["gate_min"] < 0.005
                                                                 else f"-{s['gate_max']:.2f}"),
          None if not s["runs"] else f"{s['worst_margin_db']:+.2f}", s.get("runs_failing_a_blocking_check"),
          s.get("nonfinite_removed"), s.get("sfm_points")] for s in summary]))
    held = all(s["runs"] == args.runs and not s["errors"] and not s["runs_failing_a_blocking_check"]
               and s["worst_margin_db"] >= args.min_margin for s in summary)
    print(f"\nthe gate {'held' if held else 'did NOT hold'} in every run with {args.min_margin:.1f} dB to spare")

    result = {
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "commit": commit,
        "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "progress"},
        "held_with_min_margin": held, "summary": summary, "runs": rows,
    }
    out.write_text(json.dumps(result, indent=1))
    args.progress.unlink(missing_ok=True)
    print(f"wrote {out}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
