"""The only place outside the tests where Spaceport imports Dagster's private modules (`dagster._…`).

Each import below is used because Dagster 1.13 has no public API for what it does; checked against the names
`dagster` exports at the top level and the API docs (docs.dagster.io/api). When a public equivalent appears,
replace it here and nowhere else.

- Running a run that already exists on the instance, as its run worker (`execute_run`): the public
  `execute_job` always creates a new run, and it cannot carry the code location's origin, which the UI needs
  to re-execute the run and the run monitor and retry daemon need to find its job. `dagster job execute` and
  `dagster api execute_run` use the same private functions.
- The job as a reconstructable pointer with its repository (`ReconstructableRepository`), the code location's
  origin as `workspace.yaml` declares it (`location_origins_from_yaml_paths`, `RemoteJobOrigin`), and the
  engine event a run worker logs with its pid (`EngineEventData`): what `instance.create_run_for_job` and the
  run monitor take; none of them is exported.
- The run-worker health check a run launcher reports to the run monitor (`CheckRunHealthResult`,
  `WorkerStatus`): `RunLauncher.check_run_worker_health` is the documented extension point, but its result
  types are not exported.
- The error `PipesSubprocessClient` raises for a stage that exits non-zero (`DagsterPipesExecutionError`): the
  local launcher turns it into a Failure naming the stage's own reason; nothing public names that case.
- The helpers Dagster's compute-log capture starts for each step (`compute_logs.execute_posix_tail`: `tail -F`
  and a Python `watch_orphans` process per stream): they are started in the terminal's process group, so a
  Ctrl-C to the group printed a `KeyboardInterrupt` traceback from each `watch_orphans` under our one line.
  `shield_compute_log_helpers` has that module start its children in a process group of their own; nothing
  public starts or configures them.
Not here any more: storing an asset backfill by hand (`PartitionBackfill`, `make_new_backfill_id`).
`spaceport backfill` now runs the UI's own GraphQL mutation `launchPartitionBackfill` through Dagster's
`dagster-graphql` command (in-process against workspace.yaml, no webserver); see backfill.py.
"""

import subprocess
import types

from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.errors import DagsterPipesExecutionError
from dagster._core.events import EngineEventData
from dagster._core.execution import compute_logs as _compute_logs
from dagster._core.execution.api import execute_run
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

__all__ = [
    "CheckRunHealthResult",
    "DagsterPipesExecutionError",
    "EngineEventData",
    "ReconstructableJob",
    "ReconstructableRepository",
    "RemoteJobOrigin",
    "RemoteRepositoryOrigin",
    "WorkerStatus",
    "execute_run",
    "location_origins_from_yaml_paths",
    "shield_compute_log_helpers",
]


class _OwnProcessGroup(types.ModuleType):
    """`subprocess` as compute_logs sees it: Popen starts each child in a new process group (Python 3.11's
    `process_group=0`, safe in threads unlike a preexec_fn), so a SIGINT or SIGTERM sent to the terminal's or
    the `spaceport` process group does not reach Dagster's log-mirroring helpers. They still end as before:
    terminated when the step's capture closes, or by `watch_orphans` once their parent is gone."""

    def __getattr__(self, name: str) -> object:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: object, **kwargs: object) -> subprocess.Popen:  # noqa: N802 (subprocess's name)
        kwargs.setdefault("process_group", 0)
        return subprocess.Popen(*args, **kwargs)  # type: ignore[call-overload]


def shield_compute_log_helpers() -> None:
    """Start Dagster's compute-log helpers (`tail -F`, `watch_orphans`) in their own process group (idempotent)."""
    if not isinstance(_compute_logs.subprocess, _OwnProcessGroup):
        _compute_logs.subprocess = _OwnProcessGroup("subprocess")
