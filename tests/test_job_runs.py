"""`spaceport run` makes real runs of `spaceport_main`: visible under the job, re-executable from the UI's code
location, and never two at once for one dataset."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, EventRecordsFilter, RunsFilter
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.workspace.load import load_workspace_process_context_from_yaml_paths
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from spaceport_dagster.home import workspace_file
from spaceport_dagster.job_runs import JOB_NAME, LOCATION_NAME
from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.run_events import flat_metadata
from spaceport_dagster.run_launcher import LocalRunLauncher

from .conftest import REPO, dataset_images

SHIPPED_YAML = REPO / "spaceport_dagster" / "dagster.yaml"


def _photos(tmp_path: Path, count: int = 6) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(dataset_images("lund").iterdir())[:count]:
        shutil.copy(photo, folder / photo.name)
    return folder


def test_two_runs_of_one_dataset_take_turns(spaceport_home: Path, tmp_path: Path) -> None:
    shutil.copy(SHIPPED_YAML, spaceport_home / "dagster.yaml")  # queued runs, pools, the run monitor
    photos = _photos(tmp_path)
    DagsterInstance.get().dispose()  # the instance exists (two processes creating its database at once collide)
    command = [sys.executable, "-m", "spaceport_dagster.cli", "run", str(photos), "--dataset", "twice",
               "--until", "image_set"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("waiting: dataset 'twice' is in progress" in out for out in outputs) == 1, outputs

    with DagsterInstance.get() as instance:
        runs = instance.get_run_records(RunsFilter(job_name=JOB_NAME, tags={"dagster/partition": "twice"}))
        assert len(runs) == 2
        assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}
        first, second = sorted(runs, key=lambda r: r.start_time)
        assert first.end_time <= second.start_time  # one waited for the other
        for record in runs:
            run = record.dagster_run
            assert run.remote_job_origin.location_name == LOCATION_NAME
            assert run.asset_selection == {AssetKey("image_set")}
        # lineage: the artifact, its manifest and the latest materialisation all come from the later run
        store = LocalArtifactStore(spaceport_home / "artifacts")
        assert store.manifest("twice", "image_set")["run_id"] == second.dagster_run.run_id
        event = instance.get_latest_materialization_event(AssetKey("image_set"))
        assert event.run_id == second.dagster_run.run_id and event.dagster_event.partition == "twice"
        assert flat_metadata(event.asset_materialization.metadata)["usable_images"] == 6
        checks = instance.get_event_records(EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION))
        mine = [r.event_log_entry.dagster_event.event_specific_data for r in checks
                if r.event_log_entry.run_id == second.dagster_run.run_id]
        assert {c.check_name: c.passed for c in mine} == {"enough_usable_images": True,
                                                         "recommended_image_count": False, "no_refused_files": True}
        for evaluation in mine:  # the dataset and the figures the UI's check history plots
            assert evaluation.partition == "twice"
            assert {"value", "threshold"} <= set(evaluation.metadata), evaluation.check_name
        usable = next(c for c in mine if c.check_name == "enough_usable_images")
        assert (usable.metadata["value"].value, usable.metadata["threshold"].value) == (6, 5)

        # The UI's code location (workspace.yaml) re-executes the run, as its Re-execute button does.
        with load_workspace_process_context_from_yaml_paths(instance, [str(workspace_file())]) as process_context:
            context = process_context.create_request_context()
            location = context.get_code_location(LOCATION_NAME)
            remote_job = location.get_repository("__repository__").get_full_job(JOB_NAME)
            assert remote_job.get_remote_origin() == second.dagster_run.remote_job_origin
            again = instance.create_reexecuted_run(parent_run=second.dagster_run, request_context=context,
                                                   code_location=location, remote_job=remote_job,
                                                   strategy=ReexecutionStrategy.ALL_STEPS, use_parent_run_tags=True)
            instance.submit_run(again.run_id, context)
        queued = instance.get_run_by_id(again.run_id)
        assert queued.status == DagsterRunStatus.QUEUED and queued.job_name == JOB_NAME
        assert queued.tags["dagster/partition"] == "twice" and queued.parent_run_id == second.dagster_run.run_id


def test_a_killed_worker_fails_its_run_and_the_retry_daemon_retries_it(spaceport_home: Path, tmp_path: Path) -> None:
    shutil.copy(SHIPPED_YAML, spaceport_home / "dagster.yaml")
    photos = _photos(tmp_path)
    command = [sys.executable, "-m", "spaceport_dagster.cli", "run", str(photos), "--dataset", "killed",
               "--until", "image_set"]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
                              start_new_session=True)
    with DagsterInstance.get() as instance:
        deadline = time.monotonic() + 120
        run = None
        while time.monotonic() < deadline and (run is None or run.status != DagsterRunStatus.STARTED):
            runs = instance.get_runs(RunsFilter(tags={"dagster/partition": "killed"}))
            run = runs[0] if runs else None
            time.sleep(0.1)
        assert run is not None and run.status == DagsterRunStatus.STARTED
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its stage, as an OOM kill or a host restart would
        worker.wait(timeout=30)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # nothing noticed yet

        logger = logging.getLogger("test")
        with load_workspace_process_context_from_yaml_paths(instance, [str(workspace_file())]) as process_context:
            assert isinstance(instance.run_launcher, LocalRunLauncher)
            list(execute_run_monitoring_iteration(process_context, logger))  # one tick of the run monitor
            failed = instance.get_run_record_by_id(run.run_id)
            assert failed.dagster_run.status == DagsterRunStatus.FAILURE
            messages = [r.message for r in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)]
            assert any(f"run worker (pid {worker.pid}) is gone" in m for m in messages), messages
            list(consume_new_runs_for_automatic_reexecution(process_context, [failed], logger))  # the retry daemon
        retries = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
        assert len(retries) == 1
        retry = retries[0]
        assert retry.status == DagsterRunStatus.QUEUED and retry.job_name == JOB_NAME
        assert retry.tags["dagster/retry_number"] == "1" and retry.tags["dagster/partition"] == "killed"
        assert retry.asset_selection == {AssetKey("image_set")}
