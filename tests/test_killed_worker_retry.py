"""A run whose worker is killed (`kill -9` of its pid, as an out-of-memory kill or a host restart would) during a
stage is noticed by the real Dagster daemon's run monitor, retried by its run-retry daemon from the step that
was cut, launched from the queue through our run launcher, and goes through to the end: the dataset's
artifacts end published and consistent, and the retried step reads the upstream version its parent run
published.

This runs `dagster-daemon run` itself, with the shipped dagster.yaml (only the monitor's poll interval shortened).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from spaceport_dagster.assets.run_versions import INPUT_VERSIONS_KEY, VERSION_KEY
from spaceport_dagster.home import workspace_file
from spaceport_dagster.job_runs import JOB_NAME
from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.resources.owned_dirs import process_alive
from spaceport_dagster.run_launcher import worker_of

from .conftest import REPO, dataset_images
from .stage_processes import stage_pid

SHIPPED_YAML = REPO / "spaceport_dagster" / "dagster.yaml"
DATASET = "killed"


def _wait(condition, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _metadata(instance: DagsterInstance, run_id: str, asset: str) -> dict:
    records = instance.fetch_materializations(AssetKey(asset), limit=20).records
    [record] = [r for r in records if r.run_id == run_id]
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


def test_a_killed_workers_retry_run_goes_through_to_the_end(spaceport_home: Path, tmp_path: Path) -> None:
    (spaceport_home / "dagster.yaml").write_text(
        SHIPPED_YAML.read_text().replace("poll_interval_seconds: 30", "poll_interval_seconds: 2"))
    photos = tmp_path / "photos"  # a survey whose SfM passes its gates (18 nadir photos, georegistered)
    shutil.copytree(dataset_images("brighton_beach"), photos)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "SPACEPORT_HOME": str(spaceport_home), "DAGSTER_HOME": str(spaceport_home),
           "TMPDIR": str(scratch), "PYTHONPATH": str(REPO)}
    DagsterInstance.get().dispose()  # create the instance's database before two processes use it
    worker = subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", "run", str(photos), "--dataset",
                               DATASET, "--until", "sparse_reconstruction"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stage = stage_pid(scratch, "sfm", timeout=300)

    with DagsterInstance.get() as instance:
        [run] = instance.get_runs(RunsFilter(tags={"dagster/partition": DATASET}))
        assert run.status == DagsterRunStatus.STARTED and run.job_name == JOB_NAME
        pid = worker_of(instance, run.run_id).pid
        assert pid == worker.pid  # the run's worker, as the run logged it
        os.kill(pid, signal.SIGKILL)  # only the worker: its stage follows it through its lifeline
        worker.communicate(timeout=30)
        _wait(lambda: not process_alive(stage), 30, "the stage to die with its worker")
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # nothing noticed yet
        image_set = _metadata(instance, run.run_id, "image_set")  # published before the kill
        assert image_set["published"] is True

        daemon_log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
                                   str(workspace_file())], cwd=REPO, env=env, stdout=daemon_log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            failed = _wait(lambda: (r := instance.get_run_by_id(run.run_id)).status == DagsterRunStatus.FAILURE and r,
                           180, "the run monitor to fail the run", poll=1)
            retry = _wait(lambda: next(iter(instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run.run_id}))),
                                       None), 120, "the retry daemon to create a retry run", poll=1)
            finished = _wait(lambda: (r := instance.get_run_by_id(retry.run_id)).is_finished and r, 400,
                             "the retry run to finish", poll=2)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)  # the daemon and the code server it started
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
            daemon_log.close()

        messages = [r.message for r in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)]
        assert any(f"run worker (pid {pid}) is gone" in m for m in messages), messages
        assert failed.status == DagsterRunStatus.FAILURE
        told = [f"{e.dagster_event.event_type_value if e.dagster_event else ''}: {e.message}"
                for e in instance.all_logs(retry.run_id) if e.level >= 30 or (e.dagster_event and e.dagster_event.is_failure)]
        assert finished.status == DagsterRunStatus.SUCCESS, "\n".join(told)
        assert finished.tags["dagster/retry_number"] == "1" and finished.tags["dagster/partition"] == DATASET
        assert finished.job_name == JOB_NAME
        # resumed from the step that was cut: image_set is not run again
        steps = {e.step_key for e in instance.all_logs(retry.run_id, of_type=DagsterEventType.STEP_SUCCESS)}
        assert steps == {"sparse_reconstruction"}

        # published and consistent: the artifacts verify against their manifests, the SfM comes from the retry
        # and read the image_set version the killed run published; no staging folder is left
        store = LocalArtifactStore(spaceport_home / "artifacts")
        store.fetch(DATASET, "image_set")
        store.fetch(DATASET, "sparse_reconstruction")
        assert store.manifest(DATASET, "image_set")["run_id"] == run.run_id
        assert store.manifest(DATASET, "image_set")["version"] == image_set[VERSION_KEY]
        assert store.manifest(DATASET, "sparse_reconstruction")["run_id"] == retry.run_id
        sfm = _metadata(instance, retry.run_id, "sparse_reconstruction")
        assert sfm["published"] is True
        assert sfm[INPUT_VERSIONS_KEY] == {"image_set": {"version": image_set[VERSION_KEY],
                                                         "from": f"run {run.run_id}"}}
        assert not [p.name for p in (spaceport_home / "artifacts" / DATASET).iterdir() if p.name.endswith(".tmp")]
        assert not list(scratch.glob("spaceport-stage-*"))
