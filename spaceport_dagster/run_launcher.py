"""Dagster's default run launcher, plus a health check of the run worker, so the run monitor notices a dead one.

Dagster's DefaultRunLauncher cannot tell whether a run's worker is alive, so with it a run whose worker died
(killed, out of memory, host restart) stays "started" forever and run retries never fire. Every run worker logs
its pid when it starts (`dagster api execute_run` does, and so does `spaceport run`, spaceport_dagster.job_runs);
this launcher reports the worker FAILED once that process is gone. The run monitor then fails the run and the
run-retry daemon re-executes it from the failed steps (a training step resumes from its checkpoint).
"""

from __future__ import annotations

import socket
from typing import NamedTuple

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher

from spaceport_dagster.dagster_private import CheckRunHealthResult, WorkerStatus  # not exported; the module says why
from spaceport_dagster.job_runs import CLI_WORKER_KEY
from spaceport_dagster.resources.owned_dirs import process_alive


class RunWorker(NamedTuple):
    pid: int
    host: str | None  # None: not logged (`dagster api execute_run` logs the pid only)
    spaceport_cli: bool  # a `spaceport` command executed the run itself (job_runs.report_run_worker)


def worker_of(instance, run_id: str) -> RunWorker | None:
    """The run's latest worker, from its engine events with a pid ("Started process for run", and the in-process
    executor's "Executing steps in process", which names the same pid without the host or the mark)."""
    found: RunWorker | None = None
    for record in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is None:
            continue
        if found is None:
            found = RunWorker(int(pid.value), None, False)
        elif int(pid.value) != found.pid:
            break  # an earlier worker of the same run
        host, cli = data.metadata.get("host"), data.metadata.get(CLI_WORKER_KEY)
        found = RunWorker(found.pid, found.host or (host.value if host is not None else None),
                          found.spaceport_cli or bool(cli is not None and cli.value))
    return found


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = worker_of(self._instance, run.run_id)
        if worker is None:  # not started far enough to log its pid: the start timeout covers that case
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid logged yet")
        pid, host, _ = worker
        if host is not None and host != socket.gethostname():  # anything but RUNNING would fail the run
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {pid} runs on {host}: not checked here")
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker (pid {pid}) is gone", run_worker_id=str(pid))
