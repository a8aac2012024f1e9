"""Runs of the code location's job `spaceport_main`, created on the instance and executed in this process.

This is what `dagster job execute` does, plus the code location's origin: a run started by `spaceport run`,
`rerun` or `demo` is the same kind of run as a sensor's or a backfill's. The UI lists it under the job and can
re-execute it, the `gpu` pool and run retries apply to it, and the run-status sensors see it. It runs without
a daemon: this process is the run worker (the job's own executor runs each step in a child process).

One dataset is never raced: before a run starts, `wait_for_dataset` holds a per-dataset lock (other `spaceport`
processes on this instance) and waits while any other run of the partition is in progress (a sensor's, a
backfill's or the UI's); the instance's tag concurrency limit on `dagster/partition` holds queued runs back
while this one runs.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance, DagsterRun, DagsterRunStatus, MetadataValue, RunsFilter

from spaceport_dagster.dagster_private import (  # no public API for these; the module says why
    EngineEventData,
    ReconstructableJob,
    ReconstructableRepository,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
    execute_run,
    location_origins_from_yaml_paths,
    shield_compute_log_helpers,
)
from spaceport_dagster.home import DEFINITIONS_MODULE, LOCATION_NAME, workspace_file

REPOSITORY_NAME = "__repository__"  # what Dagster names the repository of a Definitions object
JOB_NAME = "spaceport_main"
PARTITION_NAME_TAG = "dagster/partition"  # the tag Dagster puts on a run of one partition
# A run that holds the dataset: starting, running, suspended or being cancelled (Dagster's in-progress statuses;
# a queued run waits for us, the tag concurrency limit holds it back).
BUSY_STATUSES = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.SUSPENDED,
                 DagsterRunStatus.CANCELING}


@cache
def reconstructable_job() -> ReconstructableJob:
    repository = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs")
    return repository.get_reconstructable_job(JOB_NAME)


def remote_job_origin() -> RemoteJobOrigin:
    """The job's origin as the UI and the daemon load it from the home's workspace.yaml (same location name)."""
    workspace = workspace_file()
    origins = [o for o in location_origins_from_yaml_paths([str(workspace)]) if o.location_name == LOCATION_NAME]
    if not origins:
        raise RuntimeError(f"{workspace} defines no code location named {LOCATION_NAME!r}")
    return RemoteJobOrigin(RemoteRepositoryOrigin(origins[0], REPOSITORY_NAME), JOB_NAME)


def create_pipeline_run(instance: DagsterInstance, dataset: str, assets: list[str], run_config: dict[str, Any],
                        tags: dict[str, str]) -> DagsterRun:
    """A NOT_STARTED run of `spaceport_main` for the partition `dataset`, materialising `assets`."""
    job = reconstructable_job()
    job_def = job.get_definition()
    selection = {AssetKey(name) for name in assets}
    partition_tags = job_def.get_tags_for_partition_key(dataset, selected_asset_keys=selection)
    return instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        tags={**job_def.run_tags, **tags, **partition_tags},
        asset_selection=frozenset(selection) if selection != set(job_def.asset_layer.executable_asset_keys) else None,
        remote_job_origin=remote_job_origin(),
        job_code_origin=job.get_python_origin(),
    )


# Marks the "Started process" event of a run whose worker is a `spaceport` command (run, rerun, demo), so that a
# later command fails the run when that process is gone (runner.reap_abandoned_runs), and never a run the daemon
# launched: a re-execution from the UI copies its parent's tags, but it logs its own worker event.
CLI_WORKER_KEY = "spaceport worker"


def report_run_worker(instance: DagsterInstance, run: DagsterRun) -> None:
    """Log this process as `run`'s worker, as `dagster api execute_run` does (its pid), plus the host and the
    CLI_WORKER_KEY mark: the run monitor and the next `spaceport` command can tell when the worker died."""
    data = EngineEventData(metadata={**EngineEventData.in_process(os.getpid()).metadata,
                                     "host": MetadataValue.text(socket.gethostname()),
                                     CLI_WORKER_KEY: MetadataValue.bool(True)})
    instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", run, data)


def execute_pipeline_run(instance: DagsterInstance, run: DagsterRun) -> DagsterRun:
    """Execute a run made by create_pipeline_run here, as its run worker; returns the finished run."""
    report_run_worker(instance, run)
    shield_compute_log_helpers()  # Ctrl-C to the terminal's process group: no tracebacks from Dagster's helpers
    return execute_run(reconstructable_job(), run, instance, raise_on_error=False).dagster_run


def runs_in_progress(instance: DagsterInstance, dataset: str) -> list[DagsterRun]:
    """Runs of the partition `dataset` that are starting, running or being cancelled, from any source."""
    return list(instance.get_runs(filters=RunsFilter(tags={PARTITION_NAME_TAG: dataset},
                                                     statuses=list(BUSY_STATUSES))))


def _lock_path(instance: DagsterInstance, dataset: str) -> Path:
    root = Path(instance.root_directory) if instance.is_persistent else Path(os.environ.get("TMPDIR", "/tmp"))
    folder = root / "spaceport-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{dataset}.lock"


@contextmanager
def wait_for_dataset(instance: DagsterInstance, dataset: str, *, poll_seconds: float = 1.0,
                     on_wait: Callable[[list[DagsterRun]], None] | None = None) -> Iterator[None]:
    """Hold the dataset for the block: wait for the lock other `spaceport` processes take, then while any
    other run of the partition is in progress. `on_wait` is told (once) which runs it waits for."""
    told = False
    with open(_lock_path(instance, dataset), "a+") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = runs_in_progress(instance, dataset)
                if on_wait and not told:
                    on_wait(busy)
                    told = True
                time.sleep(poll_seconds)
                continue
            busy = runs_in_progress(instance, dataset)
            if not busy:
                break
            fcntl.flock(lock, fcntl.LOCK_UN)
            if on_wait and not told:
                on_wait(busy)
                told = True
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
