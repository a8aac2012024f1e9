"""Photos to .sog on a synthetic survey of any size, each stage measured on its own.

    python benchmarks/survey_pipeline.py --photos 300 --size 4000x3000 --render-scale 4 --preset standard \
        [--gps-noise 5] [--altitude-drift 100] [--work DIR] [--set splat_model.KEY=VALUE ...] [--json out.json]

The survey is rendered once into DIR (kept and reused while its settings match). Then ingest, SfM, export,
training and SOG run one after another, each as its own process through the stage's command line (as a
SageMaker job runs it, no Dagster needed), with the pipeline preset's stage presets (`spaceport_dagster.presets`).
Per stage: wall seconds, CPU seconds (user + system of the stage process and its children), peak resident
memory, peak GPU memory (torch's peak allocation as the training stage reports it, and the device's used memory
sampled by nvidia-smi every 0.5 s, which includes the CUDA context and the allocator's cache), the artifact's
disk use, and the stage's blocking checks. Quality: the published PLY and the decoded SOG rendered plainly on
the test views against the flat image, and the SfM frame against the survey's truth. Prints a Markdown table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from md_table import markdown_table  # noqa: E402
from sfm import machine  # noqa: E402

from spaceport_dagster.presets import stage_presets  # noqa: E402

STAGES = [  # (asset, stage module, inputs as {name: asset})
    ("image_set", "ingest", {}),
    ("sparse_reconstruction", "sfm", {"image_set": "image_set"}),
    ("colmap_export", "export", {"sparse": "sparse_reconstruction", "image_set": "image_set"}),
    ("splat_model", "train", {"export": "colmap_export"}),
    ("sogs_bundle", "sog", {"splat": "splat_model", "export": "colmap_export"}),
]


class GpuSampler:
    """The device's used memory (MiB), sampled by nvidia-smi every 0.5 s while a stage runs; None without one."""

    def __init__(self) -> None:
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                used = max(float(line) for line in out.split() if line.strip())
                self.peak_mib = max(self.peak_mib or 0.0, used)
            except (ValueError, OSError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.5)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


# Forks the stage from a fresh, small interpreter and reports its rusage: a child forked from this process would
# count this process's memory (the rendered survey, torch) in its peak RSS, since ru_maxrss survives exec.
TRAMPOLINE = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"maxrss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_stage(module: str, inputs: dict[str, Path], output: Path, config: dict[str, Any], log: Path) -> dict[str, Any]:
    """One stage in its own process; its report (stdout JSON), wall and CPU seconds and peak RSS."""
    shutil.rmtree(output, ignore_errors=True)
    usage_file = log.with_suffix(".rusage.json")
    cmd = [sys.executable, "-c", TRAMPOLINE, str(usage_file), sys.executable, "-m",
           f"spaceport_dagster.stages.{module}", "--output", str(output),
           "--config", json.dumps(config), *(f"--input={k}={v}" for k, v in inputs.items())]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                    os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(log, "w") as err, GpuSampler() as gpu:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    wall = time.perf_counter() - start
    code, stdout = proc.returncode, proc.stdout
    usage = json.loads(usage_file.read_text())
    try:
        report = json.loads(stdout[stdout.index("{"):])
    except ValueError:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"stage {module} exited {code} without a report: {' | '.join(tail)}") from None
    return {"report": report, "exit_code": code, "wall_s": round(wall, 1),
            "cpu_s": round(usage["cpu_s"], 1), "peak_rss_gb": round(usage["maxrss_kb"] / 2**20, 2),
            "gpu_used_peak_mib": gpu.peak_mib, "disk_mb": round(disk_bytes(output) / 1e6, 1)}


def stage_config(asset: str, preset: str, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    named = stage_presets(preset).get(asset)
    if named:
        config["preset"] = named
    return {**config, **overrides.get(asset, {})}


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = item.split("=", 1)
        asset, field = key.split(".", 1)
        out.setdefault(asset, {})[field] = json.loads(value)
    return out


def generate(out: Path, args: argparse.Namespace) -> float:
    from spaceport_dagster.demo.survey import generate_survey, is_current
    from spaceport_dagster.demo.variants import survey_for

    width, height = (int(v) for v in args.size.split("x"))
    spec = survey_for(args.photos, width, height, altitude_drift_m=args.altitude_drift,
                      horizontal_noise_m=args.gps_noise, render_scale=args.render_scale)
    if is_current(out, spec):
        return 0.0
    start = time.perf_counter()
    generate_survey(out, spec)
    return time.perf_counter() - start


def frame_against_truth(survey: Path, sparse: Path) -> dict[str, Any]:
    from spaceport_dagster.demo.truth_check import compare_artifact, compare_frame

    truth = json.loads((survey / "truth.json").read_text())
    report = json.loads((sparse / "report.json").read_text())
    out: dict[str, Any] = {"cameras": compare_artifact(sparse, survey / "truth.json").summary()}
    try:
        frame = compare_frame(sparse / "sparse", report, truth)
        out.update(up_error_deg=round(frame.up_error_deg, 3), scale_error_pct=round(100 * (frame.scale_ratio - 1), 2))
    except ValueError as exc:
        out["frame"] = str(exc)
    return out


def headline(asset: str, meta: dict[str, Any]) -> str:
    pick = {
        "image_set": ["images", "refused"],
        "sparse_reconstruction": ["registered", "points", "georegistration_frame"],
        "colmap_export": ["images", "image_size"],
        "splat_model": ["steps", "gaussians", "training_resolution", "psnr", "baseline_psnr", "ssim", "alpha_mean"],
        "sogs_bundle": ["splats", "sog_bytes", "ratio", "psnr_decoded", "psnr_drop_db"],
    }[asset]
    return ", ".join(f"{k} {meta[k]}" for k in pick if k in meta)


COLUMNS = ["stage", "wall s", "CPU s", "peak RSS GB", "peak GPU GB (torch / device)", "disk MB", "checks", "figures"]


def table(rows: list[dict[str, Any]]) -> str:
    def gpu(r: dict[str, Any]) -> str:
        torch_mb = r["report"]["metadata"].get("peak_gpu_mem_mb")
        device = r.get("gpu_used_peak_mib")
        return (f"{torch_mb / 1024:.1f}" if torch_mb else "-") + " / " + (f"{device / 1024:.1f}" if device else "-")

    def checks(r: dict[str, Any]) -> str:
        blocking = [c for c in r["report"]["checks"] if c["blocking"]]
        failed = [c["name"] for c in blocking if not c["passed"]]
        return f"{len(blocking) - len(failed)}/{len(blocking)}" + (f" (failed: {', '.join(failed)})" if failed else "")

    return markdown_table(COLUMNS, ([r["asset"], r["wall_s"], r["cpu_s"], r["peak_rss_gb"], gpu(r), r["disk_mb"],
                                     checks(r), headline(r["asset"], r["report"]["metadata"])] for r in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--render-scale", type=int, default=4)
    parser.add_argument("--gps-noise", type=float, default=5.0)
    parser.add_argument("--altitude-drift", type=float, default=100.0)
    parser.add_argument("--preset", default="standard", help="pipeline preset: preview, standard or quality")
    parser.add_argument("--set", action="append", default=[], metavar="ASSET.KEY=JSON",
                        help="a stage option, e.g. splat_model.steps=2000")
    parser.add_argument("--work", type=Path, default=Path(".devdata/survey-pipeline"))
    parser.add_argument("--until", default="sogs_bundle")
    parser.add_argument("--reuse", nargs="*", default=[], metavar="ASSET",
                        help="keep these stages' artifacts from an earlier run instead of running them again")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/survey_pipeline.json"))
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    survey = args.work / (f"survey-{args.photos}-{args.size}-r{args.render_scale}-noise{args.gps_noise:g}"
                          f"-drift{args.altitude_drift:g}")
    rendered = generate(survey, args)
    status = f"rendered in {rendered:.0f} s" if rendered else "reused"
    print(f"survey {survey}: {status}", file=sys.stderr, flush=True)
    artifacts = args.work / f"artifacts-{survey.name}-{args.preset}"
    artifacts.mkdir(parents=True, exist_ok=True)
    paths = {asset: artifacts / asset for asset, _, _ in STAGES}
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for asset, module, inputs in STAGES:
        saved = artifacts / f"{asset}.stage_report.json"
        if asset in args.reuse and saved.is_file():
            row = json.loads(saved.read_text())
            row["reused"] = True
        else:
            stage_inputs = {name: paths[source] for name, source in inputs.items()}
            if module == "ingest":
                stage_inputs = {"source": survey / "images"}
            config = stage_config(asset, args.preset, overrides)
            print(f"{asset}: {module} {json.dumps(config)}", file=sys.stderr, flush=True)
            row = {"asset": asset, "config": config,
                   **run_stage(module, stage_inputs, paths[asset], config, artifacts / f"{asset}.log")}
            saved.write_text(json.dumps(row, default=str))
        rows.append(row)
        print(table(rows[-1:]), file=sys.stderr, flush=True)
        if row["exit_code"] not in (0, 1) or asset == args.until:
            break
    result: dict[str, Any] = {"machine": machine(), "load_avg_before": load_before, "survey": str(survey),
                              "survey_render_s": round(rendered, 1), "settings": {k: str(v) for k, v in vars(args).items()},
                              "stages": rows, "total_wall_s": round(sum(r["wall_s"] for r in rows), 1),
                              "total_cpu_s": round(sum(r["cpu_s"] for r in rows), 1)}
    if (paths["sparse_reconstruction"] / "report.json").is_file():
        result["truth"] = frame_against_truth(survey, paths["sparse_reconstruction"])
    for name, path in (("ply_mb", paths["splat_model"] / "point_cloud.ply"), ("sog_mb", None)):
        if path is not None and path.is_file():
            result[name] = round(path.stat().st_size / 1e6, 1)
    sogs = list(paths["sogs_bundle"].glob("*.sog")) if paths["sogs_bundle"].is_dir() else []
    if sogs:
        result["sog_mb"] = round(sogs[0].stat().st_size / 1e6, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    info = result["machine"]
    print(f"{info['date']}  {info['cores']} cores  {info['cpu']}  load before {load_before}  after {info['load_avg_1_5_15']}")
    print(f"survey {args.photos} photos {args.size} (render 1/{args.render_scale}), preset {args.preset}: "
          f"{result['total_wall_s']} s wall, {result['total_cpu_s']} CPU s; truth: {result.get('truth')}")
    print(table(rows))
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
