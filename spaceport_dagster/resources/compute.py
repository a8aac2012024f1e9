"""How a stage runs: the launcher interface, and the local launcher (a subprocess under Dagster Pipes).

A launcher takes a StageRequest (which stage, which upstream artifacts and raw sources, which config) and
the staging area of the output, runs the stage, and returns what the stage reported through Pipes. The
SageMaker launcher implements the same `launch`, so assets never change when compute moves to AWS.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    ConfigurableResource,
    Failure,
    MaterializeResult,
    PipesSubprocessClient,
)

from spaceport_dagster.dagster_private import DagsterPipesExecutionError
from spaceport_dagster.stages.entry import FAILURE_FILE, STAGE_LOG_ENV
from spaceport_dagster.stages.lifeline import PARENT_ENV

from .artifact_store import ArtifactStore, Staging
from .owned_dirs import owner_tag, sweep
from .pipes_messages import WholeLineFileMessageReader, describe
from .stage_watch import StageStopped, StageWatch
from .storage import spaceport_home

PipesResult = MaterializeResult | AssetCheckResult
SCRATCH_PREFIX = "spaceport-stage-"  # a stage's scratch folder: <TMPDIR>/spaceport-stage-<dataset>-<stage>-...


@dataclass
class StageRequest:
    stage: str  # module under spaceport_dagster.stages, e.g. "ingest"
    dataset: str
    asset: str
    artifacts: dict[str, str] = field(default_factory=dict)  # input name -> upstream asset name
    sources: dict[str, str] = field(default_factory=dict)  # input name -> raw URI (uploads)
    config: dict[str, Any] = field(default_factory=dict)
    resumable: bool = False  # the stage checkpoints: give it a folder that survives a failed attempt
    timeout_s: float = 0  # kill the stage after this long (0: never)
    heartbeat_s: float = 0  # kill the stage when its heartbeat is older than this (0: do not watch)
    part: str = ""  # one of several runs of the stage for the asset (a tile: "tile2of4"); in names and folders

    @property
    def label(self) -> str:
        """The stage and its part, e.g. `train-tile2of4`: scratch folders, job names."""
        return f"{self.stage}-{self.part}" if self.part else self.stage


class StageLauncher(ConfigurableResource):
    """Base of every compute resource."""

    def launch(
        self, context: AssetExecutionContext, store: ArtifactStore, request: StageRequest, staging: Staging
    ) -> list[PipesResult]:
        raise NotImplementedError


class LocalStageLauncher(StageLauncher):
    """Runs `python -m spaceport_dagster.stages.<stage>` on this machine; logs reach the run log via Pipes."""

    python: str = ""  # interpreter for the stage; this one by default
    env: dict[str, str] = {}
    checkpoint_root: str = ""  # resumable stages' checkpoints; default SPACEPORT_HOME/checkpoints
    stages_package: str = "spaceport_dagster.stages"  # where `<stage>` modules live (tests run their own stages)

    def launch(
        self, context: AssetExecutionContext, store: ArtifactStore, request: StageRequest, staging: Staging
    ) -> list[PipesResult]:
        inputs = {name: str(store.fetch(request.dataset, asset)) for name, asset in request.artifacts.items()}
        inputs.update(request.sources)
        checkpoints = None
        if request.resumable:
            checkpoints = checkpoint_folder(Path(self.checkpoint_root or spaceport_home() / "checkpoints"), store,
                                            request)
            inputs["checkpoints"] = str(checkpoints)
        extras = {"inputs": inputs, "output": str(staging.local_dir), "config": request.config,
                  "dataset": request.dataset}
        # The stage's own TMPDIR (COLMAP logs, temporary folders): removed afterwards, or by the next run when
        # this process was killed; its control folder carries the stage's pid and heartbeat.
        scratch_root = Path(tempfile.gettempdir())
        sweep(scratch_root, SCRATCH_PREFIX)
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{request.dataset}-{request.label}-",
                                        suffix=owner_tag(), dir=scratch_root))
        (scratch / "control").mkdir()
        (scratch / "tmp").mkdir()
        # Idle torch/OpenMP workers spin by default; on a busy laptop or CI core that made CPU stages 5-8x slower.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, **self.env, "TMPDIR": str(scratch / "tmp")}
        console_log = spaceport_home() / "logs" / request.dataset / request.asset / f"{context.run_id}.log"
        env[STAGE_LOG_ENV] = str(console_log)
        env[PARENT_ENV] = str(os.getpid())  # the stage dies with this process (stages/lifeline.py)
        reader = WholeLineFileMessageReader()
        client = PipesSubprocessClient(env=env, message_reader=reader)
        python = self.python or sys.executable
        command = [python, "-m", "spaceport_dagster.stages.lifeline", str(scratch / "control"), python, "-m",
                   f"{self.stages_package}.{request.stage}"]
        watch = StageWatch(scratch / "control", request.stage, request.timeout_s, request.heartbeat_s)
        try:
            with watch:
                results = list(client.run(context=context, command=command, extras=extras).get_results())
        except StageStopped as exc:
            raise Failure(str(exc)) from None
        except DagsterPipesExecutionError as exc:
            _log_console(context, request.stage, console_log)
            raise Failure(f"stage {request.stage} failed for dataset {request.dataset!r}: "
                          f"{failure_reason(staging, exc, watch.reason)}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _log_console(context, request.stage, console_log)
        if reader.problems:  # never publish on a partial report: the checks that were lost would pass silently
            raise Failure(f"stage {request.stage} finished for dataset {request.dataset!r}, but its Pipes messages "
                          f"could not all be read, so its report and checks are incomplete and nothing was "
                          f"published (a retry runs the stage again): {describe(reader.problems)}")
        if checkpoints is not None:  # finished: the next run starts afresh, a failed one would have resumed
            shutil.rmtree(checkpoints, ignore_errors=True)
            with contextlib.suppress(OSError):
                checkpoints.parent.rmdir()  # empty unless something else is kept there
        return results


def checkpoint_folder(root: Path, store: ArtifactStore, request: StageRequest) -> Path:
    """Where a resumable stage keeps its checkpoints: `<root>/<dataset>/<asset>/<upstream versions>/`.

    Keyed by the published version of every upstream artifact (the stage keys them by its config too), so a
    re-submitted survey, whose upstream artifacts are new versions, never resumes another survey's model. The
    folders of superseded versions are removed here: nothing can resume them any more (one run per dataset
    at a time, so no run is using them).
    """
    versions = {name: store.manifest(request.dataset, asset)["version"]
                for name, asset in sorted(request.artifacts.items())}
    key = "+".join(f"{name}-{version}" for name, version in versions.items()) or "no-upstream"
    parent = root / request.dataset / request.asset
    if parent.is_dir():
        for other in parent.iterdir():
            if other.name != key:
                shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink(missing_ok=True)
    folder = parent / key
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log_console(context: AssetExecutionContext, stage: str, path: Path, limit: int = 200_000) -> None:
    """The stage's console output into the run's log (debug level: the UI shows it, the CLI does not)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    text = path.read_text(errors="replace")
    cut = f"(last {limit:,} characters) " if len(text) > limit else ""
    context.log.debug(f"{stage} console output {cut}from {path}:\n{text[-limit:]}")


def failure_reason(staging: Staging, exc: Exception, killed_because: str | None) -> str:
    """What ended the stage, in words: the watch's reason, a signal, else the stage's own failure message."""
    if killed_because:
        return killed_because
    code = re.search(r"failed with code (-?\d+)", str(exc))
    returncode = int(code.group(1)) if code else None
    if returncode is not None and returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        why = " (the kernel's out-of-memory killer, or a kill -9)" if number == signal.SIGKILL else ""
        return f"stage killed by signal {number} ({name}){why}"
    failure = staging.local_dir / FAILURE_FILE
    if failure.is_file():
        return failure.read_text().strip()
    if returncode is not None:  # ended without a word: native code (COLMAP, a decoder) called exit()
        return (f"stage exited with code {returncode} without reporting why (native code ended the process; "
                "its last output lines above name the cause)")
    return str(exc)
