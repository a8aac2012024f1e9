"""`spaceport`: run the pipeline on a folder of photos, open the UI, and the other user-facing commands."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import warnings
from pathlib import Path

from spaceport_dagster.console import print_progress, print_stage, stage_figures, ui_command
from spaceport_dagster.home import prepare_home, workspace_file
from spaceport_dagster.stage_order import ASSET_ORDER
from spaceport_dagster.stages.dataset_id import InvalidDatasetId, dataset_id_for_source, validate_dataset_id

STAGES_HELP = ", ".join(ASSET_ORDER)


def _check_run_arguments(preset: str, start: str | None, until: str | None) -> None:
    """Preset and stage names, before anything is registered (UsageError)."""
    from spaceport_dagster.preflight import UsageError
    from spaceport_dagster.presets import stage_presets
    from spaceport_dagster.runner import select_stages

    try:
        stage_presets(preset)
        select_stages(start, until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_gpu_preset(preset: str, start: str | None, until: str | None, cpu: bool) -> None:
    """A GPU preset that would train here on a machine without a GPU stops before anything runs (UsageError),
    unless the user asked for the CPU (`--cpu`)."""
    from spaceport_dagster.preflight import UsageError, local_training_without_gpu
    from spaceport_dagster.runner import select_stages

    if cpu or "splat_model" not in select_stages(start, until):
        return
    if local_training_without_gpu(preset):
        raise UsageError(f"preset {preset!r} trains for a GPU and this machine has none (hours on the CPU): use "
                         "--preset preview, or SPACEPORT_COMPUTE=sagemaker for a GPU instance, or --cpu to train it "
                         "here anyway")


def cpu_options(cpu: bool) -> dict[str, dict[str, str]] | None:
    """Stage options for `--cpu`: training on the CPU, asked for explicitly."""
    return {"splat_model": {"device": "cpu"}} if cpu else None


def _run_checked(work) -> int:
    """Run `work` (returning an exit code); argument and reachability errors become one line, exit 2 or 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    from spaceport_dagster.preflight import Unreachable, UsageError
    from spaceport_dagster.resources.artifact_store import ArtifactDamaged, ArtifactMissing, StorageUnavailable

    try:
        return work()
    except (UsageError, InvalidDatasetId, ArtifactMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Unreachable, ArtifactDamaged, StorageUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # S3 failing outside a stage (the run's own stages report theirs)
        print(f"error: S3 request failed: {exc}; check the bucket, AWS_ENDPOINT_URL and credentials", file=sys.stderr)
        return 1


def cmd_run(args: argparse.Namespace) -> int:
    from spaceport_dagster.preflight import check_artifact_root, check_source

    def work() -> int:
        _check_run_arguments(args.preset, None, args.until)
        source = check_source(args.source)
        # from the folder's name or the S3 prefix; an explicit '' is refused, never replaced
        dataset = validate_dataset_id(args.dataset) if args.dataset is not None else dataset_id_for_source(source)
        home = prepare_home()
        from spaceport_dagster.resources.storage import default_artifact_root
        from spaceport_dagster.runner import run_pipeline

        check_gpu_preset(args.preset, None, args.until, args.cpu)
        check_artifact_root(default_artifact_root())
        print(f"spaceport: dataset {dataset!r} from {source} (preset {args.preset}); home {home}")
        return report(run_pipeline(dataset, source, until=args.until, preset=args.preset, on_stage=print_stage,
                                   on_progress=print_progress, options=cpu_options(args.cpu)))

    return _run_checked(work)


def cmd_rerun(args: argparse.Namespace) -> int:
    from spaceport_dagster.preflight import UsageError, check_artifact_root, check_stored_uploads

    def work() -> int:
        dataset = validate_dataset_id(args.dataset)
        _check_run_arguments(args.preset, args.start, args.until)
        home = prepare_home()
        from spaceport_dagster.resources.storage import default_artifact_root
        from spaceport_dagster.resources.uploads import default_source
        from spaceport_dagster.runner import run_pipeline

        check_gpu_preset(args.preset, args.start, args.until, args.cpu)
        check_artifact_root(default_artifact_root())
        if args.start != "image_set":  # ingesting again needs the uploads, checked below, not a known dataset
            check_known_dataset(dataset)
        if args.start == "image_set":
            try:
                check_stored_uploads(default_source(dataset))
            except UsageError as exc:
                raise UsageError(f"dataset {dataset!r} cannot be ingested again: {exc}") from None
        print(f"spaceport: dataset {dataset!r} again from {args.start} (preset {args.preset}); home {home}")
        return report(run_pipeline(dataset, None, start=args.start, until=args.until, preset=args.preset,
                                   on_stage=print_stage, on_progress=print_progress, options=cpu_options(args.cpu)))

    return _run_checked(work)


def check_known_dataset(dataset: str) -> None:
    """`dataset` is a partition of this home's instance or has a published artifact (UsageError naming the known
    datasets otherwise)."""
    from dagster import DagsterInstance

    from spaceport_dagster.partitions import datasets_partitions
    from spaceport_dagster.preflight import UsageError
    from spaceport_dagster.resources.selection import resources_from_env

    with DagsterInstance.get() as instance:
        known = instance.get_dynamic_partitions(datasets_partitions.name)
    if dataset in known:
        return
    store = resources_from_env()["storage"].store()
    if not any(store.exists(dataset, asset) for asset in ASSET_ORDER):
        raise UsageError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(known)) or 'none yet'}")


def report(outcome) -> int:
    """The summary table after a run; 1 when a stage failed or a quality gate stopped it."""
    from spaceport_dagster.quality_summary import splat_quality_line

    print()
    print(f"{'stage':<22} {'status':<12} {'seconds':>8}  key figures")
    for stage in outcome.stages:
        seconds = f"{stage.seconds:.1f}" if stage.seconds is not None else "-"
        print(f"{stage.asset:<22} {stage.status:<12} {seconds:>8}  {stage_figures(stage)}")
    quality = splat_quality_line(outcome.stages)
    if quality:
        print(f"\n{quality}")
    for stage in outcome.stages:
        for warning in stage.warnings:
            print(f"warning: {stage.asset}: {warning}")
    if outcome.reaped:
        print(f"note: marked {len(outcome.reaped)} run(s) of a killed spaceport process as failed: "
              + ", ".join(outcome.reaped))
    print(f"\nrun {outcome.run_id}: see it in the UI with `{ui_command()}`")
    message = outcome.failure_message()
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 130 if outcome.interrupted else 1
    return 0


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on `host:port` already (binding it fails)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


# Said by `dagster dev` on every start, and nothing a user of `spaceport ui` can act on.
UI_WARNINGS_IGNORED = ["ignore:Function `dev_command` is superseded:Warning"]


def cmd_ui(args: argparse.Namespace) -> int:
    home = prepare_home()
    if port_in_use(args.host, args.port):  # dagster dev would start its daemon and code server anyway
        print(f"error: port {args.port} on {args.host} is in use (another `spaceport ui` or dagster dev?); "
              "choose another with --port", file=sys.stderr)
        return 1
    print(f"spaceport ui: http://{args.host}:{args.port}/ for home {home} (ready in a few seconds; Ctrl-C stops it)",
          flush=True)
    # Through this interpreter: `.venv/bin/spaceport ui` works without the venv's bin on PATH. Dagster's own
    # start-up chatter (INFO lines every sensor tick, warnings about its cursors) stays out; errors show.
    flags = [item for warning in UI_WARNINGS_IGNORED for item in ("-W", warning)]
    os.execv(sys.executable, [sys.executable, *flags, "-m", "dagster", "dev", "-w", str(workspace_file()),
                              "-h", args.host, "-p", str(args.port), "--log-level", "error"])
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from spaceport_dagster.submit import ChecksumMismatch, submit

    folder = Path(args.folder)
    try:
        dataset = validate_dataset_id(args.dataset) if args.dataset else dataset_id_for_source(str(folder.resolve()))
    except InvalidDatasetId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.to and not os.environ.get("SPACEPORT_UPLOADS"):
        prepare_home()  # the inbox lives in SPACEPORT_HOME

    def progress(item: str, report) -> None:
        if args.verbose:
            print(f"  {item}", flush=True)

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        report = submit(folder, dataset, email=args.email, preset=args.preset, target=args.to, progress=progress,
                        jobs=args.jobs)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ChecksumMismatch, BotoCoreError, ClientError) as exc:
        print(f"error: {exc}; run the same command again to resume", file=sys.stderr)
        return 1
    print(f"spaceport: submitted {report.files} file(s), {report.bytes_total / 1e6:.1f} MB, as {dataset!r} to "
          f"{report.target}")
    print(f"  uploaded {report.uploaded}, already there {report.skipped}"
          + (f", parts sent {report.parts_sent}, parts resumed {report.parts_skipped}"
             if report.parts_sent or report.parts_skipped else "")
          + f" in {report.seconds:.1f}s")
    print(f"  marker {report.marker}: the upload sensor starts a run on its next tick")
    for name, why in report.left_behind:  # what ingest would refuse unread: never copied
        print(f"warning: left behind {name}: {why}", file=sys.stderr)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    prepare_home()
    from dagster import DagsterInstance

    from spaceport_dagster.backfill import BackfillLaunchError, launch_backfill

    with DagsterInstance.get() as instance:
        try:
            launch = launch_backfill(instance, args.assets, args.datasets, preset=args.preset, title=args.title)
        except (ValueError, InvalidDatasetId) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except BackfillLaunchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"spaceport: backfill {launch.backfill_id} \"{launch.title}\": {', '.join(launch.assets)} over "
          f"{len(launch.datasets)} dataset(s) ({', '.join(launch.datasets)})"
          + (f", preset {launch.preset}" if launch.preset else ""))
    print("  the Dagster daemon launches one run per dataset (`spaceport ui` runs it); follow it in the UI under "
          f"Runs > Backfills, titled \"{launch.title}\" (its page: /runs/b/{launch.backfill_id})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spaceport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialise the pipeline for one dataset")
    run.add_argument("source", help="a folder of photos or an s3:// prefix of uploads")
    run.add_argument("--dataset", help="dataset id (default: derived from the folder name)")
    run.add_argument("--until", metavar="STAGE", help=f"stop after this asset: {STAGES_HELP}")
    run.add_argument("--preset", default="preview", help="preview (laptop), standard (GPU) or quality")
    run.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU preset (slow)")
    run.set_defaults(func=cmd_run)
    rerun = sub.add_parser("rerun", help="materialise a dataset again from one stage on, reading the published "
                                         "artifacts before it (e.g. retrain with another preset)")
    rerun.add_argument("dataset", help="dataset id, as `spaceport run` printed it")
    rerun.add_argument("--from", dest="start", required=True, metavar="STAGE",
                       help=f"first stage to run again: {STAGES_HELP}")
    rerun.add_argument("--until", metavar="STAGE", help=f"stop after this asset: {STAGES_HELP}")
    rerun.add_argument("--preset", default="preview", help="preview (laptop), standard (GPU) or quality")
    rerun.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU preset (slow)")
    rerun.set_defaults(func=cmd_rerun)
    ui = sub.add_parser("ui", help="start the Dagster UI on this home's instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    ui.set_defaults(func=cmd_ui)
    submit = sub.add_parser("submit", help="upload a survey to the inbox or the S3 uploads prefix, marker last")
    submit.add_argument("folder", help="folder of photos")
    submit.add_argument("--dataset", help="dataset id (default: derived from the folder name)")
    submit.add_argument("--email", action="append", help="notify this address (repeatable)")
    submit.add_argument("--preset", help="pipeline preset for this dataset (default: the sensor's)")
    submit.add_argument("--to", help="uploads root: a folder or s3://bucket/prefix/uploads (default SPACEPORT_UPLOADS "
                                     "or SPACEPORT_HOME/inbox)")
    submit.add_argument("--jobs", type=int, default=4, help="files uploaded at once to S3 (default 4)")
    submit.add_argument("-v", "--verbose", action="store_true", help="print each file and part")
    submit.set_defaults(func=cmd_submit)
    backfill = sub.add_parser("backfill", help="re-run assets over datasets as one Dagster backfill")
    backfill.add_argument("--assets", required=True, help="comma-separated assets, e.g. splat_model,sogs_bundle")
    backfill.add_argument("--datasets", help="comma-separated dataset ids (default: every dataset)")
    backfill.add_argument("--preset", help="pipeline preset for these runs, e.g. quality")
    backfill.add_argument("--title", help="title shown in the UI")
    backfill.set_defaults(func=cmd_backfill)
    from spaceport_dagster.demo.command import add_parser as add_demo_parser
    from spaceport_dagster.viewer.server import add_parser as add_view_parser

    add_demo_parser(sub)
    add_view_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*is currently in (preview|beta).*")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # outside a run (a run reports its own interruption)
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
