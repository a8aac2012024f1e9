"""Materialise the pipeline for one dataset through a real Dagster instance, reporting as it goes.

Used by `spaceport run`, `rerun` and `demo`: each is a run of the code location's job `spaceport_main` on the
instance under DAGSTER_HOME (spaceport_dagster.job_runs), so the UI lists it, can re-execute it, and the
sensors, pools and run retries treat it like any other run.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.job_runs import create_pipeline_run, execute_pipeline_run, wait_for_dataset
from spaceport_dagster.notify.message import RunSummary
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.presets import PRESET_TAG, stage_presets
from spaceport_dagster.progress import StageProgress
from spaceport_dagster.resources.artifact_store import ArtifactMissing, ArtifactStore
from spaceport_dagster.resources.owned_dirs import process_alive
from spaceport_dagster.resources.selection import resources_from_env
from spaceport_dagster.resources.stage_watch import stop_all
from spaceport_dagster.run_events import read_run
from spaceport_dagster.run_launcher import worker_of
from spaceport_dagster.stage_order import ASSET_ORDER

# The events _collect reads; filtering them in the event log's query skips the stages' log lines on each poll.
WATCHED_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION,
                  DagsterEventType.ASSET_CHECK_EVALUATION, DagsterEventType.STEP_SUCCESS,
                  DagsterEventType.STEP_FAILURE}


UNFINISHED = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING]


class Interrupted(Exception):
    """SIGTERM (or Ctrl-C) while a run executes in this process."""


@dataclass
class StageOutcome:
    asset: str
    status: str = "not run"
    seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PipelineOutcome:
    dataset: str
    run_id: str | None
    stages: list[StageOutcome]
    interrupted: str | None = None  # how the run was interrupted, when it was
    reaped: list[str] = field(default_factory=list)  # runs of killed processes this run marked failed

    @property
    def success(self) -> bool:
        return all(s.status == "ok" for s in self.stages)

    def failure_message(self) -> str | None:
        if self.interrupted:
            return f"run {self.interrupted}: running stages were stopped, nothing of theirs was published"
        for stage in self.stages:
            if stage.failed_checks:
                return f"{stage.asset}: quality gate failed: " + "; ".join(stage.failed_checks)
            if stage.error:
                return f"{stage.asset}: {stage.error}"
        return None


def select_stages(start: str | None = None, until: str | None = None) -> list[str]:
    """The stages from `start` to `until` (both included), in pipeline order; None means the first / the last."""
    for name in (start, until):
        if name is not None and name not in ASSET_ORDER:
            raise ValueError(f"unknown asset {name!r}; choose one of {', '.join(ASSET_ORDER)}")
    first = ASSET_ORDER.index(start) if start else 0
    last = ASSET_ORDER.index(until) + 1 if until else len(ASSET_ORDER)
    if first >= last:
        raise ValueError(f"{start} comes after {until} in the pipeline ({' -> '.join(ASSET_ORDER)})")
    return list(ASSET_ORDER[first:last])


def missing_inputs(dataset: str, selected: list[str], store: ArtifactStore) -> list[str]:
    """Upstream artifacts the selected stages read but do not make, and that are not published for `dataset`."""
    made = {AssetKey(name) for name in selected}
    needed = {key for a in PIPELINE_ASSETS if a.key in made for key in a.dependency_keys} - made
    return sorted(k.to_user_string() for k in needed if not store.exists(dataset, k.to_user_string()))


def run_config_for(assets: list[str], source: str | None, preset: str,
                   options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run config: each asset's stage preset, the source, and stage `options` per asset (e.g. `--cpu`)."""
    presets = stage_presets(preset)
    ops: dict[str, Any] = {}
    for name in assets:
        cfg: dict[str, Any] = {}
        if name in presets:
            cfg["preset"] = presets[name]
        if (options or {}).get(name):
            cfg["options"] = dict(options[name])
        if name == "image_set" and source:
            cfg["source"] = source
        ops[name] = {"config": cfg}
    # The console shows the CLI's own lines and the cause of a failure; Dagster's step logs and tracebacks stay
    # in the run's event log (`spaceport ui`). The steps run in this process (the stages are subprocesses
    # anyway), so that Ctrl-C or SIGTERM reaches the stages it started (stage_watch.stop_all).
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
            "execution": {"config": {"in_process": {}}}}


def _collect(instance: DagsterInstance, run_id: str, outcomes: dict[str, StageOutcome],
             on_event: Callable[[StageOutcome], None] | None, seen: set[tuple[str, str]]) -> None:
    """Bring `outcomes` up to date with the run's event log (run_events.read_run); `on_event` hears of each
    stage that ended, once."""
    summary = read_run(instance.all_logs(run_id, of_type=WATCHED_EVENTS), RunSummary(run_id, succeeded=False))
    for stage in summary.stages:
        outcome = outcomes.get(stage.asset)
        if outcome is None or stage.status not in ("running", "ok", "failed"):
            continue
        outcome.metadata = stage.metadata
        outcome.seconds = stage.seconds
        outcome.failed_checks = [f"{c.check}: {c.text or c.check}" for c in stage.failed_checks if c.blocking]
        outcome.warnings = [f"{c.check}: {c.text or c.check}" for c in stage.failed_checks if not c.blocking]
        if stage.status == "running":
            outcome.status = "running"
            continue
        outcome.status = "gate failed" if outcome.failed_checks else stage.status
        outcome.error = stage.error if outcome.status == "failed" else None
        if on_event and (stage.asset, outcome.status) not in seen:
            seen.add((stage.asset, outcome.status))
            on_event(outcome)


class _ProgressWatch:
    """Reads the run's new log lines on each poll and hears of each running stage's progress (progress.py);
    `on_progress` gets a line per running stage every minute."""

    def __init__(self, instance: DagsterInstance, run_id: str, on_progress: Callable[[str], None]) -> None:
        self.instance, self.run_id, self.on_progress = instance, run_id, on_progress
        self.cursor: str | None = None
        self.stages: dict[str, StageProgress] = {}

    def poll(self, outcomes: dict[str, StageOutcome]) -> None:
        while True:
            found = self.instance.get_records_for_run(self.run_id, cursor=self.cursor)
            self.cursor = found.cursor
            for record in found.records:
                entry = record.event_log_entry
                if not entry.step_key:
                    continue
                event = entry.dagster_event
                if event is not None and event.event_type == DagsterEventType.STEP_START:
                    self.stages[entry.step_key] = StageProgress(entry.step_key, entry.timestamp)
                elif event is None and entry.step_key in self.stages:
                    self.stages[entry.step_key].hear(entry.user_message, entry.timestamp)
            if not found.has_more:
                break
        now = time.time()
        for asset, progress in self.stages.items():
            outcome = outcomes.get(asset)
            if outcome is not None and outcome.status == "running" and progress.due(now):
                progress.told = now
                self.on_progress(progress.line(now))


def _tell_waiting(dataset: str) -> Callable[[list[DagsterRun]], None]:
    def tell(busy: list[DagsterRun]) -> None:
        runs = ", ".join(r.run_id for r in busy) or "another spaceport process"
        print(f"  waiting: dataset {dataset!r} is in progress in run {runs}; this run starts when it ends",
              flush=True)
    return tell


def run_pipeline(dataset: str, source: str | None, *, until: str | None = None, preset: str = "preview",
                 instance: DagsterInstance | None = None,
                 on_stage: Callable[[StageOutcome], None] | None = None, poll_seconds: float = 0.5,
                 start: str | None = None, tags: dict[str, str] | None = None,
                 options: dict[str, dict[str, Any]] | None = None,
                 on_progress: Callable[[str], None] | None = None) -> PipelineOutcome:
    """Materialise the stages from `start` (default: the first) to `until` (default: the last) for `dataset`.
    Stages before `start` are not run: their published artifacts are read, and must exist (ArtifactMissing).
    Waits while another run of `dataset` is in progress."""
    selected = select_stages(start, until)
    missing = missing_inputs(dataset, selected, resources_from_env()["storage"].store())
    if missing:
        raise ArtifactMissing(f"dataset {dataset!r} has no published {', '.join(missing)}, which {selected[0]} "
                              "reads; run the stages before it first")
    instance = instance or DagsterInstance.get()
    reaped = reap_abandoned_runs(instance)
    register_dataset(instance, dataset)
    outcomes = {name: StageOutcome(name) for name in selected}
    with wait_for_dataset(instance, dataset, on_wait=_tell_waiting(dataset)):
        run = create_pipeline_run(instance, dataset, selected, run_config_for(selected, source, preset, options),
                                  {PRESET_TAG: preset, **(tags or {})})
        done = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                execute_pipeline_run(instance, run)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        run_id = run.run_id
        seen: set[tuple[str, str]] = set()
        interrupted: str | None = None

        progress = _ProgressWatch(instance, run_id, on_progress) if on_progress else None

        def poll(wait: float) -> bool:
            finished = done.wait(wait)
            _collect(instance, run_id, outcomes, on_stage, seen)
            if progress is not None and not finished:
                progress.poll(outcomes)
            return finished

        with _signals_as_interrupt() as signals:
            try:
                while not poll(poll_seconds):
                    signals.check()
            except (KeyboardInterrupt, Interrupted) as exc:
                sigterm = isinstance(exc, Interrupted) and signals.received == signal.SIGTERM
                interrupted = "interrupted (SIGTERM)" if sigterm else "interrupted (Ctrl-C)"
                stop_all(f"run {interrupted}; stage stopped")
                try:  # the stopped stage fails its step: the run ends as FAILURE and its staging is removed
                    deadline = 60.0
                    while not poll(min(poll_seconds, deadline)) and deadline > 0:
                        deadline -= poll_seconds
                except (KeyboardInterrupt, Interrupted):
                    pass
                if not done.is_set():  # still not ended: say so in the instance, never leave it STARTED
                    current = instance.get_run_by_id(run_id)
                    if current is not None and current.status in UNFINISHED:
                        instance.report_run_canceled(current, f"run {interrupted}")
        if not interrupted:
            thread.join()
    if errors and not interrupted:
        raise errors[0]
    for outcome in outcomes.values():
        if outcome.status in ("not run", "running"):  # the run ended before this stage started (or finished)
            outcome.status = "skipped" if outcome.status == "not run" else "stopped"
    return PipelineOutcome(dataset, run_id, [outcomes[n] for n in selected], interrupted, reaped)


class _signals_as_interrupt:
    """While a run executes in the main thread, SIGINT (Ctrl-C) and SIGTERM raise Interrupted there, and are
    remembered: an exception raised inside a garbage-collector callback is swallowed by Python ("Exception ignored
    in ..."; seen with SQLAlchemy's), so the follow loop also checks what was received (`check`)."""

    def __enter__(self) -> _signals_as_interrupt:
        self.received: int | None = None
        self.previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: object) -> None:
                self.received = signum
                raise Interrupted()

            self.previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted()

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def reap_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Runs left unfinished by a `spaceport` process of this host that is gone (kill -9): marked failed, and the
    concurrency-pool slots (the `gpu` pool) held by them or by any finished run freed. Their ids.

    Only a run whose own worker was a `spaceport` command (job_runs.report_run_worker) is judged, by that worker's
    pid: a run the daemon launched (a re-execution from the UI, a sensor's, a backfill's) is the run monitor's."""
    reaped: list[str] = []
    host = socket.gethostname()
    for run in instance.get_runs(filters=RunsFilter(statuses=UNFINISHED), limit=200):
        worker = worker_of(instance, run.run_id)
        if worker is None or not worker.spaceport_cli or worker.host != host or process_alive(worker.pid):
            continue
        instance.report_run_failed(run, f"the spaceport process running this run (pid {worker.pid}) is gone "
                                        "(killed); marked failed by the next run")
        reaped.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holders = storage.get_concurrency_run_ids()
        if holders:
            for run in instance.get_runs(filters=RunsFilter(run_ids=list(holders))):
                if run.is_finished or run.run_id in reaped:
                    storage.free_concurrency_slots_for_run(run.run_id)
    return reaped
