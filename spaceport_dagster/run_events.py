"""A run read back from the instance's event log: per-stage status, metadata, timings, failed checks and error.

One reader serves both who need it: the CLI's progress lines and summary table (`runner.run_pipeline`, which
reads the log of the run it executes as it goes) and the notification of a finished run (`sensors.run_status`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun, EventLogEntry, MetadataValue

from spaceport_dagster.notify.message import CheckFailure, RunSummary, StageSummary

TAG_PARTITION = "dagster/partition"
# On the observation of an output that failed a blocking check (assets/stage_asset.raise_rejected): its figures,
# since a rejected output has no materialisation.
REJECTED_TAG = "spaceport/rejected"


# The stage's figures that an asset's headline rows show, kept by their own keys in one JSON entry rather than
# repeated as rows (assets/headline.arrange); flat_metadata puts them back beside the other keys.
HEADLINE_FIGURES_KEY = "headline figures"


def plain(value: Any) -> Any:
    """The value inside a Dagster metadata value (text, number, path, JSON data ...); anything else as it is."""
    return value.value if isinstance(value, MetadataValue) else value


def flat_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """An asset event's metadata as plain values, with the headline figures back under their own keys."""
    flat = {k: plain(v) for k, v in (metadata or {}).items()}
    folded = flat.get(HEADLINE_FIGURES_KEY)
    return {**flat, **folded} if isinstance(folded, dict) else flat


def _first_lines(text: str | None, limit: int = 3) -> str | None:
    if not text:
        return None
    return "\n".join(line for line in text.strip().splitlines()[:limit])


# Errors whose messages are written for the user: shown as they are, not the low-level cause they wrap (an S3
# outage's StorageUnavailable names the asset and what was kept; its botocore cause names one URL).
OWN_ERRORS = ("Failure", "StorageUnavailable", "ArtifactDamaged", "ArtifactMissing")


def step_error(error: Any) -> str:
    """The stage's own words rather than Dagster's wrappers: the launcher's Failure, else the innermost cause."""
    if error is None:
        return "step failed"
    chain = [error]
    while getattr(chain[-1], "cause", None) is not None:
        chain.append(chain[-1].cause)
    error = next((e for e in chain if e.cls_name in OWN_ERRORS), chain[-1])
    lines = [line for line in error.message.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "step failed"
    prefix = f"{error.cls_name}: "
    return text.split(prefix, 1)[1] if prefix in text else text


def read_run(records: Iterable[EventLogEntry], summary: RunSummary) -> RunSummary:
    """Fold the run's event records into `summary`: its stages in the order they appear, each with its status
    (running until its step ends), seconds, materialised metadata (plain values), failed checks and error."""
    stages: dict[str, StageSummary] = {s.asset: s for s in summary.stages}
    starts: dict[str, float] = {}
    run_start = run_end = None

    def stage(name: str) -> StageSummary:
        return stages.setdefault(name, StageSummary(name))

    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == DagsterEventType.RUN_START:
            run_start = record.timestamp
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            run_end = record.timestamp
            if kind == DagsterEventType.RUN_FAILURE and not summary.failure_message:
                summary.failure_message = _first_lines(event.message)
        elif kind == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            stage(event.event_specific_data.asset_key.to_user_string())
        elif kind == DagsterEventType.STEP_START and event.step_key:
            starts[event.step_key] = record.timestamp
            stage(event.step_key).status = "running"
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            name = materialization.asset_key.to_user_string()
            stage(name).metadata = flat_metadata(materialization.metadata)
        elif kind == DagsterEventType.ASSET_OBSERVATION:
            observation = event.event_specific_data.asset_observation
            if (observation.tags or {}).get(REJECTED_TAG):
                name = observation.asset_key.to_user_string()
                stage(name).metadata = flat_metadata(observation.metadata)
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                text = evaluation.description or plain((evaluation.metadata or {}).get("description", "")) or ""
                blocking = getattr(evaluation.severity, "value", "ERROR") == "ERROR"
                name = evaluation.asset_key.to_user_string()
                failure = CheckFailure(name, evaluation.check_name, str(text), blocking)
                if failure not in stage(name).failed_checks:
                    stage(name).failed_checks.append(failure)
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and event.step_key:
            item = stage(event.step_key)
            if event.step_key in starts:
                item.seconds = record.timestamp - starts[event.step_key]
            if kind == DagsterEventType.STEP_FAILURE:
                item.status = "failed"
                error = getattr(event.event_specific_data, "error", None)
                item.error = step_error(error)
                if summary.failed_step is None:
                    summary.failed_step = event.step_key
                    summary.failure_message = _first_lines(getattr(error, "message", None)) or event.message
            else:
                item.status = "ok"
        elif kind == DagsterEventType.STEP_SKIPPED and event.step_key:
            stage(event.step_key).status = "skipped"
    if run_start is not None and run_end is not None:
        summary.seconds = run_end - run_start
    summary.stages = list(stages.values())
    return summary


def summarize_run(instance: DagsterInstance, run: DagsterRun) -> RunSummary:
    """The finished `run`, for its notification."""
    summary = RunSummary(run_id=run.run_id, succeeded=run.is_success, dataset=run.tags.get(TAG_PARTITION),
                         job=run.job_name, preset=run.tags.get("spaceport/preset"),
                         upload=run.tags.get("spaceport/upload"))
    return read_run(instance.all_logs(run.run_id), summary)
