"""A finished run, read back from the instance's event log: per-stage metadata, timings, failed checks."""

from __future__ import annotations

from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun

from .message import CheckFailure, RunSummary, StageSummary

TAG_PARTITION = "dagster/partition"


def _plain(value: Any) -> Any:
    for attr in ("value", "text", "path", "data"):
        if hasattr(value, attr):
            return getattr(value, attr)
    return value


def _first_lines(text: str | None, limit: int = 3) -> str | None:
    if not text:
        return None
    return "\n".join(line for line in text.strip().splitlines()[:limit])


def summarize_run(instance: DagsterInstance, run: DagsterRun) -> RunSummary:
    stages: dict[str, StageSummary] = {}
    starts: dict[str, float] = {}
    summary = RunSummary(run_id=run.run_id, succeeded=run.is_success, dataset=run.tags.get(TAG_PARTITION),
                         job=run.job_name, preset=run.tags.get("spaceport/preset"),
                         upload=run.tags.get("spaceport/upload"))
    run_start = run_end = None

    def stage(name: str) -> StageSummary:
        return stages.setdefault(name, StageSummary(name))

    for record in instance.all_logs(run.run_id):
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
            stage(name).metadata = {k: _plain(v) for k, v in (materialization.metadata or {}).items()}
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                text = evaluation.description or _plain((evaluation.metadata or {}).get("description", "")) or ""
                blocking = getattr(evaluation.severity, "value", "ERROR") == "ERROR"
                stage(evaluation.asset_key.to_user_string()).failed_checks.append(
                    CheckFailure(evaluation.asset_key.to_user_string(), evaluation.check_name, str(text), blocking))
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and event.step_key:
            item = stage(event.step_key)
            if event.step_key in starts:
                item.seconds = record.timestamp - starts[event.step_key]
            if kind == DagsterEventType.STEP_FAILURE:
                item.status = "failed"
                error = getattr(event.event_specific_data, "error", None)
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
