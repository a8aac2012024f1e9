"""`spaceport demo`: generate the built-in survey under SPACEPORT_HOME/demo and run the whole graph on it."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEMO_DATASET = "demo"


def demo_dir(home: Path) -> Path:
    return home / "demo"


def ensure_survey(out: Path, regenerate: bool = False) -> bool:
    """Generate the survey into `out` unless an identical one is there; returns whether it rendered."""
    from .survey import SurveySpec, generate_survey, is_current  # torch: imported only when needed

    spec = SurveySpec()
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

    from .truth_check import compare_artifact

    store = open_store(default_artifact_root(), os.environ.get("AWS_ENDPOINT_URL"))
    try:
        sparse = store.fetch(dataset, "sparse_reconstruction")
        print("ground truth: " + compare_artifact(sparse, out / "truth.json").summary())
    except (ArtifactMissing, ValueError) as exc:
        print(f"ground truth: not compared ({exc})")


def cmd_demo(args: argparse.Namespace) -> int:
    from spaceport_dagster.cli import prepare_home, print_stage

    home = prepare_home()
    os.environ.setdefault("GLOG_minloglevel", "1")  # COLMAP's per-image INFO lines drown the demo's progress
    # Stage subprocesses inherit this: OpenMP threads that sleep instead of spinning while they wait. On a
    # busy 2-core machine, spinning torch threads made CPU rendering 5-8x slower (docs/demo.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = demo_dir(home)
    ensure_survey(out, args.regenerate)
    from spaceport_dagster.quality_summary import splat_quality_line
    from spaceport_dagster.runner import run_pipeline

    start = time.perf_counter()
    print(f"spaceport demo: dataset {DEMO_DATASET!r} (preset {args.preset}); home {home}", flush=True)
    outcome = run_pipeline(DEMO_DATASET, str(out / "images"), until=args.until, preset=args.preset,
                           on_stage=print_stage)
    print(f"\npipeline wall time {time.perf_counter() - start:.0f}s; run {outcome.run_id}")
    report_truth(DEMO_DATASET, out)
    splat = next((s for s in outcome.stages if s.asset == "splat_model"), None)
    line = splat_quality_line(splat.metadata) if splat is not None else None
    if line:
        print(line)
    message = outcome.failure_message()
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"\nbrowse the run and its assets: spaceport ui   (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    if any(s.asset == "sogs_bundle" and s.status == "ok" for s in outcome.stages):
        print(f"see the splat in a browser: spaceport view {DEMO_DATASET}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="generate the built-in synthetic survey and run the whole pipeline on it")
    demo.add_argument("--preset", default="preview", help="pipeline preset (default preview: minutes on a laptop CPU)")
    demo.add_argument("--until", help="stop after this asset (e.g. sparse_reconstruction)")
    demo.add_argument("--regenerate", action="store_true", help="render the survey again even if it is there")
    demo.set_defaults(func=cmd_demo)


if __name__ == "__main__":
    from spaceport_dagster.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
