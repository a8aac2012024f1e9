"""Run success and failure sensors: summarise the finished run and send it through the notifier."""

from __future__ import annotations

import os

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from spaceport_dagster.emails import InvalidEmail, validate_addresses
from spaceport_dagster.notify.message import Notification, build_notification
from spaceport_dagster.resources.notifications import NotifierResource
from spaceport_dagster.resources.uploads import uploads_root
from spaceport_dagster.run_events import TAG_PARTITION, summarize_run
from spaceport_dagster.stage_order import ASSET_ORDER
from spaceport_dagster.stages.s3uri import is_s3_uri

from .markers import InvalidOptions, parse_options
from .upload_sensor import TAG_NOTIFY


def _addresses(context: RunStatusSensorContext, dataset: str) -> list[str]:
    """The run's tag (set by the upload sensor), else the dataset's `dataset.json` (e.g. for backfill runs)."""
    tagged = context.dagster_run.tags.get(TAG_NOTIFY, "")
    if tagged:  # anyone who launches a run can set the tag: each address is checked again here
        addresses: list[str] = []
        for value in tagged.split(","):
            try:
                addresses += validate_addresses([value], f"run tag {TAG_NOTIFY}")
            except InvalidEmail as exc:
                context.log.warning(f"no notification to that address: {exc}")
        return addresses
    try:
        from .inbox import InboxUploads
        from .s3_uploads import S3Uploads

        root = uploads_root()
        location = S3Uploads(root) if is_s3_uri(root) else InboxUploads(root)
        return parse_options(location.read_options(dataset)).email
    except (InvalidOptions, OSError, ValueError) as exc:
        context.log.warning(f"no notification address for {dataset!r}: {exc}")
    except Exception as exc:  # an unreachable bucket must not stop the notification
        context.log.warning(f"could not read dataset.json of {dataset!r}: {type(exc).__name__}: {exc}")
    return []


def notify_run(context: RunStatusSensorContext, notifier: NotifierResource) -> Notification | None:
    """Notify about a run of the pipeline's assets for one dataset; other runs are left alone."""
    dataset = context.dagster_run.tags.get(TAG_PARTITION)
    if not dataset:
        return None
    summary = summarize_run(context.instance, context.dagster_run)
    if not {s.asset for s in summary.stages} & set(ASSET_ORDER):
        return None
    note = build_notification(summary, to=_addresses(context, dataset), ui_url=os.environ.get("SPACEPORT_UI_URL"))

    def run_log(line: str) -> None:
        context.log.info(line)
        context.instance.report_engine_event(line, context.dagster_run)

    notifier.send(note, log_line=run_log)
    return note


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, name="notify_on_success",
                   default_status=DefaultSensorStatus.RUNNING,
                   description="Sends the dataset's owner the key figures and artifact URIs of a finished run.")
def notify_on_success(context: RunStatusSensorContext, notifier: NotifierResource) -> None:
    notify_run(context, notifier)


@run_failure_sensor(name="notify_on_failure", default_status=DefaultSensorStatus.RUNNING,
                    description="Tells the dataset's owner which step or quality gate stopped the run, and why.")
def notify_on_failure(context: RunFailureSensorContext, notifier: NotifierResource) -> None:
    notify_run(context, notifier)
