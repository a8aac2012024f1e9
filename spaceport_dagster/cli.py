"""`spaceport`: run the pipeline on a folder of photos, open the UI, and the other user-facing commands."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from spaceport_dagster.stages.dataset_id import InvalidDatasetId, suggest_dataset_id, validate_dataset_id
from spaceport_dagster.stages.s3uri import is_s3_uri


def prepare_home() -> Path:
    """SPACEPORT_HOME holds artifacts and the Dagster instance (DAGSTER_HOME), so `dagster dev` sees our runs."""
    home = Path(os.environ.get("SPACEPORT_HOME", "./.spaceport")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["SPACEPORT_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    instance_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    shipped = Path(__file__).with_name("dagster.yaml")
    if not instance_yaml.exists() and shipped.exists():
        instance_yaml.write_text(shipped.read_text())
    return home


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _figures(stage) -> str:
    from spaceport_dagster.runner import KEY_FIGURES

    parts = [f"{k}={_format(stage.metadata[k])}" for k in KEY_FIGURES.get(stage.asset, []) if k in stage.metadata]
    return ", ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    source = args.source
    if not is_s3_uri(source):
        if not Path(source).is_dir():
            print(f"error: {source} is not a folder of photos", file=sys.stderr)
            return 2
        source = str(Path(source).resolve())
    try:
        dataset = validate_dataset_id(args.dataset) if args.dataset else suggest_dataset_id(
            Path(source.rstrip("/")).name if not is_s3_uri(source) else source.rstrip("/").rsplit("/", 1)[-1])
    except InvalidDatasetId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    home = prepare_home()
    from spaceport_dagster.runner import run_pipeline

    print(f"spaceport: dataset {dataset!r} from {source} (preset {args.preset}); home {home}")

    def progress(stage) -> None:
        seconds = f"{stage.seconds:6.1f}s" if stage.seconds is not None else "      "
        print(f"  [{stage.status:^11}] {stage.asset:<22} {seconds}  {_figures(stage)}", flush=True)

    outcome = run_pipeline(dataset, source, until=args.until, preset=args.preset, on_stage=progress)
    print()
    print(f"{'stage':<22} {'status':<12} {'seconds':>8}  key figures")
    for stage in outcome.stages:
        seconds = f"{stage.seconds:.1f}" if stage.seconds is not None else "-"
        print(f"{stage.asset:<22} {stage.status:<12} {seconds:>8}  {_figures(stage)}")
    print(f"\nrun {outcome.run_id}: see it with `DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev`")
    message = outcome.failure_message()
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    prepare_home()
    os.execvp("dagster", ["dagster", "dev", "-w", str(Path(__file__).resolve().parents[1] / "workspace.yaml"),
                          "-p", str(args.port)])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spaceport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialise the pipeline for one dataset")
    run.add_argument("source", help="a folder of photos or an s3:// prefix of uploads")
    run.add_argument("--dataset", help="dataset id (default: derived from the folder name)")
    run.add_argument("--until", help="stop after this asset (e.g. colmap_export)")
    run.add_argument("--preset", default="preview", help="preview (laptop), standard (GPU) or quality")
    run.set_defaults(func=cmd_run)
    ui = sub.add_parser("ui", help="start the Dagster UI on this home's instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*is currently in (preview|beta).*")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
