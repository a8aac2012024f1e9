"""`spaceport demo`: generate the built-in survey under SPACEPORT_HOME/demo and run the whole graph on it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from spaceport_dagster.console import print_progress, print_stage
from spaceport_dagster.home import prepare_home
from spaceport_dagster.stage_order import ASSET_ORDER

DEMO_DATASET = "demo"


def demo_dir(home: Path) -> Path:
    return home / "demo"


def survey_spec(args: argparse.Namespace | None = None):  # -> SurveySpec (torch: imported only when needed)
    """The built-in survey, or one sized and degraded by the command-line options."""
    from .survey import SurveySpec

    if args is None or not any((args.photos, args.size, args.gps_altitude_drift, args.gps_noise, args.corridor,
                                args.render_scale > 1)):
        return SurveySpec()
    from .variants import survey_for

    width, height = (int(v) for v in (args.size or "800x600").lower().split("x"))
    return survey_for(args.photos or SurveySpec().flight.count, width, height, corridor=args.corridor,
                      altitude_drift_m=args.gps_altitude_drift, horizontal_noise_m=args.gps_noise,
                      render_scale=args.render_scale)


def ensure_survey(out: Path, regenerate: bool = False, spec=None) -> bool:
    """Generate the survey into `out` unless an identical one is there; returns whether it rendered."""
    from .survey import SurveySpec, generate_survey, is_current  # torch: imported only when needed

    spec = spec or SurveySpec()
    if not regenerate and is_current(out, spec):
        print(f"spaceport demo: survey already at {out} (same generator settings); --regenerate to redo it")
        return False
    start = time.perf_counter()
    print(f"spaceport demo: rendering {spec.flight.count} photos of a synthetic site into {out}/images ...", flush=True)

    def progress(done: int, total: int, name: str) -> None:
        if done == total or done % 7 == 0:
            print(f"  {done}/{total} photos ({time.perf_counter() - start:.0f}s)", flush=True)

    generate_survey(out, spec, progress)
    print(f"  survey ready in {time.perf_counter() - start:.1f}s; true cameras in {out}/truth.json", flush=True)
    return True


def report_truth(dataset: str, out: Path) -> None:
    """Print how far the reconstructed cameras are from the true ones (the demo's ground truth)."""
    from spaceport_dagster.resources.artifact_store import ArtifactMissing, open_store
    from spaceport_dagster.resources.storage import default_artifact_root

    from .truth_check import compare_artifact, compare_frame

    store = open_store(default_artifact_root(), os.environ.get("AWS_ENDPOINT_URL"))
    try:
        sparse = store.fetch(dataset, "sparse_reconstruction")
        print("ground truth: " + compare_artifact(sparse, out / "truth.json").summary())
        report = json.loads((sparse / "report.json").read_text())
        print("ground truth: " + compare_frame(sparse / "sparse", report,
                                               json.loads((out / "truth.json").read_text())).summary())
    except (ArtifactMissing, ValueError) as exc:
        print(f"ground truth: not compared ({exc})")


def cmd_demo(args: argparse.Namespace) -> int:
    home = prepare_home()
    os.environ.setdefault("GLOG_minloglevel", "1")  # COLMAP's per-image INFO lines drown the demo's progress
    # Stage subprocesses inherit this: OpenMP threads that sleep instead of spinning while they wait. On a
    # busy 2-core machine, spinning torch threads made CPU rendering 5-8x slower (docs/demo.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = demo_dir(home)
    ensure_survey(out, args.regenerate, survey_spec(args))
    from spaceport_dagster.console import ui_command
    from spaceport_dagster.quality_summary import splat_quality_line
    from spaceport_dagster.runner import run_pipeline

    start = time.perf_counter()
    print(f"spaceport demo: dataset {DEMO_DATASET!r} (preset {args.preset}); home {home}", flush=True)
    outcome = run_pipeline(DEMO_DATASET, str(out / "images"), until=args.until, preset=args.preset,
                           on_stage=print_stage, on_progress=print_progress)
    print(f"\npipeline wall time {time.perf_counter() - start:.0f}s; run {outcome.run_id}")
    report_truth(DEMO_DATASET, out)
    line = splat_quality_line(outcome.stages)
    if line:
        print(line)
    print(f"\nbrowse the run and its assets: {ui_command()}")
    message = outcome.failure_message()
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 1
    if any(s.asset == "sogs_bundle" and s.status == "ok" for s in outcome.stages):
        print(f"see the splat in a browser: spaceport view {DEMO_DATASET}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="generate the built-in synthetic survey and run the whole pipeline on it")
    demo.add_argument("--preset", default="preview", help="pipeline preset (default preview: minutes on a laptop CPU)")
    demo.add_argument("--until", metavar="STAGE", help=f"stop after this asset: {', '.join(ASSET_ORDER)}")
    demo.add_argument("--regenerate", action="store_true", help="render the survey again even if it is there")
    survey = demo.add_argument_group("survey", "a survey of another size or with camera-GPS errors (with ground truth)")
    survey.add_argument("--photos", type=int, help="number of photos (a grid with obliques, or one line)")
    survey.add_argument("--size", help="photo size WIDTHxHEIGHT, e.g. 4000x3000 (default 800x600)")
    survey.add_argument("--render-scale", type=int, default=1,
                        help="render at 1/N of --size and resize: cheap 12-20 MP photos (default 1)")
    survey.add_argument("--gps-altitude-drift", type=float, default=0.0, metavar="M",
                        help="GPS altitude climbs this many metres over the flight (camera GPS)")
    survey.add_argument("--gps-noise", type=float, default=0.0, metavar="M",
                        help="horizontal GPS noise, standard deviation per axis in metres")
    survey.add_argument("--corridor", action="store_true", help="one straight flight line")
    demo.set_defaults(func=cmd_demo)

