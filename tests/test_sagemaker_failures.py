"""SageMaker failure paths end in a clear Dagster error and leave the last published artifact as it was."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from dagster import DagsterEventType, materialize

from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.artifact_store import S3ArtifactStore
from spaceport_dagster.resources.selection import resources_from_env

pytest.register_assert_rewrite("tests.sagemaker_fixtures")  # it is also a plugin (below)
from .sagemaker_fixtures import copy_photos  # noqa: E402

pytest_plugins = ("tests.sagemaker_fixtures",)  # the sagemaker, sagemaker_env fixtures

DATASET = "survey-7"


@pytest.fixture
def previous(sagemaker_env: dict[str, str], aws_env: str) -> dict[str, Any]:
    """An image_set published earlier (by any means): what every failure must leave untouched."""
    store = S3ArtifactStore(sagemaker_env["SPACEPORT_ARTIFACT_ROOT"], aws_env)
    with store.staging(DATASET, "image_set") as staging:
        (staging.local_dir / "images").mkdir()
        (staging.local_dir / "images" / "old.jpg").write_bytes(b"earlier photo")
        (staging.local_dir / "manifest.json").write_text(json.dumps({"images": [{"name": "old.jpg"}]}))
        store.publish(staging)
    return {"store": store, "manifest": store.manifest(DATASET, "image_set")}


def _keys(store: S3ArtifactStore, prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.prefix + prefix)
    return sorted(o["Key"][len(store.prefix):] for page in pages for o in page.get("Contents", []))


def _assert_untouched(previous: dict[str, Any]) -> None:
    store: S3ArtifactStore = previous["store"]
    assert store.manifest(DATASET, "image_set") == previous["manifest"]
    version = previous["manifest"]["version"]
    # nothing but the old version and its manifest: no partial upload, no staging leftovers, no scratch
    assert _keys(store, f"{DATASET}/") == [f"{DATASET}/image_set/{version}/_SUCCESS",
                                          f"{DATASET}/image_set/{version}/images/old.jpg",
                                          f"{DATASET}/image_set/{version}/manifest.json",
                                          f"{DATASET}/image_set/_SUCCESS"]
    assert _keys(store, "_sagemaker/") == []  # the job's scratch (sources, Pipes files) is gone too


def _run(instance: Any, upload: Path, options: dict[str, Any] | None = None):
    register_dataset(instance, DATASET)
    config = {"source": str(upload), **({"options": options} if options else {})}
    return materialize([image_set], partition_key=DATASET, instance=instance, resources=resources_from_env(),
                       run_config={"ops": {"image_set": {"config": config}}}, raise_on_error=False)


def _failure(result: Any) -> str:
    [event] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return event.step_failure_data.error.message


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    return copy_photos("lund", tmp_path / "upload", 6)


def test_sagemaker_failure_reason_reaches_the_run(sagemaker, sagemaker_env, previous, instance, upload) -> None:
    reason = "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type."
    sagemaker.behave("ingest", fail=reason)
    result = _run(instance, upload)
    assert not result.success
    message = _failure(result)
    assert "stage ingest failed for dataset 'survey-7': SageMaker processing job sp-survey-7-ingest-" in message
    assert f"Failed: {reason}" in message
    _assert_untouched(previous)
    # a retry (here: the run again, once capacity is back) launches a new job and publishes atomically
    sagemaker.behave("ingest")
    retry = _run(instance, upload)
    assert retry.success
    first, second = (r["ProcessingJobName"] for r in sagemaker.created("processing"))
    assert first != second and second.startswith("sp-survey-7-ingest-")
    store: S3ArtifactStore = previous["store"]
    manifest = store.manifest(DATASET, "image_set")
    assert manifest["version"] != previous["manifest"]["version"] and len(manifest["files"]) == 7
    old = previous["manifest"]["version"]  # superseded, kept readable for the retention period (24 h)
    assert [k for k in _keys(store, f"{DATASET}/image_set/") if old in k] == [
        f"{DATASET}/image_set/{old}/{name}" for name in ("_SUCCESS", "images/old.jpg", "manifest.json")]


def test_stage_failure_message_reaches_the_run(sagemaker, sagemaker_env, previous, instance, upload) -> None:
    # A value of the wrong type passes the launcher's option check (it checks names and presets, not types)
    # and fails inside the stage: a crash in the container, with the stage's own message.
    result = _run(instance, upload, options={"min_images": "five"})
    assert not result.success
    message = _failure(result)
    [job] = sagemaker.jobs.values()
    assert job.status == "Failed"
    # SageMaker's FailureReason and the stage's own message (the container's /opt/ml/output/message)
    assert "AlgorithmError: See job logs for more information" in message
    assert "TypeError: '>=' not supported between instances of 'int' and 'str'" in message
    assert job.exit_message.startswith("TypeError: '>=' not supported between instances of 'int' and 'str'")
    _assert_untouched(previous)


def test_run_cancellation_stops_the_job(sagemaker, sagemaker_env, previous, instance, upload) -> None:
    sagemaker.behave("ingest", hang=True)

    def cancel() -> None:  # what `dagster run terminate` does to the run worker: SIGINT/SIGTERM
        sagemaker.wait_for_container("ingest")
        os.kill(os.getpid(), signal.SIGINT)

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    result = _run(instance, upload)
    canceller.join(timeout=5)
    assert not result.success
    [job] = sagemaker.jobs.values()
    assert [op for op, _ in sagemaker.calls if op.startswith("Stop")] == ["StopProcessingJob"]
    assert job.status == "Stopped"
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"run interrupted: stopping SageMaker processing job {job.name}" in m for m in logged)
    assert any(f"SageMaker job {job.name} is Stopped; its output is discarded" in m for m in logged)
    _assert_untouched(previous)


def test_max_runtime_ends_the_job_with_a_clear_error(sagemaker, sagemaker_env, previous, instance, upload,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACEPORT_SAGEMAKER_INGEST_MAX_RUNTIME_S", "2")
    sagemaker.behave("ingest", hang=True)
    result = _run(instance, upload)
    assert not result.success
    [request] = sagemaker.created("processing")
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 2}
    message = _failure(result)
    assert re.search(r"Stopped: time-out: stopped by SageMaker after [23] s, MaxRuntimeInSeconds=2 reached", message)
    assert not [op for op, _ in sagemaker.calls if op.startswith("Stop")]  # SageMaker stopped it, not us
    _assert_untouched(previous)


def test_s3_outage_mid_upload_leaves_no_partial_artifact(sagemaker, sagemaker_env, previous, instance, upload) -> None:
    sagemaker.behave("ingest", s3_outage_after=3)
    store: S3ArtifactStore = previous["store"]
    result = _run(instance, upload)
    assert not result.success
    message = _failure(result)
    assert "Failed: ClientError: Failed to upload the job output to S3: EndpointConnectionError" in message
    [request] = sagemaker.created("processing")
    # the job did leave 3 files under the staging version before S3 went away; the launcher removed them
    staging = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert staging.startswith(f"s3://{store.bucket}/{store.prefix}{DATASET}/image_set/")
    [job] = sagemaker.jobs.values()
    assert len(job.uploaded) == 3 and all(uri.startswith(staging) for uri in job.uploaded)
    _assert_untouched(previous)


def test_a_lost_message_chunk_fails_the_step_naming_the_stage(sagemaker, sagemaker_env, previous, instance,
                                                              upload) -> None:
    """The job completed, but the chunk with the checks and "closed" never landed: no publish on half a report."""
    sagemaker.behave("ingest", lose_last_message_chunk=True)
    result = _run(instance, upload)
    assert not result.success
    message = _failure(result)
    [job] = sagemaker.jobs.values()
    assert job.status == "Completed"
    assert f"stage ingest finished in SageMaker job {job.name} for dataset 'survey-7'" in message
    assert "nothing was published" in message
    assert re.search(r"the stage's closing message never arrived \(\d+ messages read; read chunks 1 to (\d+); "
                     r"chunk (\d+) never arrived\)", message), message
    _assert_untouched(previous)
    sagemaker.behave("ingest")
    retried = _run(instance, upload)  # a retry runs the stage again and publishes
    assert retried.success
    assert previous["store"].manifest(DATASET, "image_set")["version"] != previous["manifest"]["version"]


def test_blocking_gate_keeps_the_output_as_rejected(sagemaker, sagemaker_env, previous, instance, tmp_path) -> None:
    """Three photos: the job succeeds, the `enough_usable_images` gate blocks; the output is kept for inspection
    at image_set.rejected/<run id>/ and no unpublished version is left under image_set/."""
    upload = copy_photos("lund", tmp_path / "three", 3)
    result = _run(instance, upload)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["enough_usable_images"] is False
    [job] = sagemaker.jobs.values()
    assert job.status == "Completed" and len(job.uploaded) == 4  # 3 images + manifest.json, to the staging version
    store: S3ArtifactStore = previous["store"]
    assert store.manifest(DATASET, "image_set") == previous["manifest"]
    version = previous["manifest"]["version"]
    rejected = f"{DATASET}/image_set.rejected/{result.run_id}"  # one folder per run
    assert _keys(store, f"{DATASET}/") == sorted([
        f"{rejected}/images/{p.name}" for p in upload.iterdir()] + [
        f"{rejected}/manifest.json", f"{DATASET}/image_set/{version}/images/old.jpg",
        f"{DATASET}/image_set/{version}/manifest.json", f"{DATASET}/image_set/{version}/_SUCCESS",
        f"{DATASET}/image_set/_SUCCESS"])
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("image_set failed 1 quality gate(s); output kept at s3://" in m for m in logged)


def test_stage_options_are_checked_before_any_job(sagemaker, sagemaker_env, instance, tmp_path: Path) -> None:
    """A typo in a stage option fails in the launcher, naming the option, and no SageMaker job is created."""
    upload = copy_photos("lund", tmp_path / "upload", 5)
    register_dataset(instance, "typo")
    result = materialize([image_set], partition_key="typo", instance=instance, resources=resources_from_env(),
                         raise_on_error=False,
                         run_config={"ops": {"image_set": {"config": {"source": str(upload),
                                                                      "options": {"min_image": 3}}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "no SageMaker job started for image_set of 'typo'" in message
    assert "IngestConfig has no option(s) min_image" in message
    assert sagemaker.created() == []


def _tamper(store: S3ArtifactStore, asset: str, path: str, body: bytes) -> None:
    version = store.manifest(DATASET, asset)["version"]
    boto3.client("s3").put_object(Bucket=store.bucket, Key=f"{store.prefix}{DATASET}/{asset}/{version}/{path}",
                                  Body=body)


@pytest.mark.parametrize("kind", ["processing", "training"])
def test_a_damaged_input_is_refused_inside_the_job(kind: str, sagemaker, sagemaker_env, previous, instance) -> None:
    """The job's channel copies the version prefix; the stage checks it against the manifest before use.
    Processing: sfm reads image_set at /opt/ml/processing/input/image_set (bytes overwritten, same size).
    Training: train reads colmap_export at /opt/ml/input/data/export (a file cut to half its length)."""
    from spaceport_dagster.assets.sparse_reconstruction import sparse_reconstruction
    from spaceport_dagster.assets.splat_model import splat_model

    store: S3ArtifactStore = previous["store"]
    register_dataset(instance, DATASET)
    if kind == "processing":
        asset, target, what = "image_set", sparse_reconstruction, "images/old.jpg does not match its SHA-256 checksum"
        _tamper(store, "image_set", "images/old.jpg", b"EARLIER PHOTO")  # 13 bytes, as before
    else:
        points = bytes(range(256)) * 16
        with store.staging(DATASET, "colmap_export") as staging:
            (staging.local_dir / "sparse" / "0").mkdir(parents=True)
            (staging.local_dir / "sparse" / "0" / "points3D.bin").write_bytes(points)
            store.publish(staging)
        asset, target, what = "colmap_export", splat_model, "sparse/0/points3D.bin has 2,048 bytes, the manifest says 4,096"
        _tamper(store, "colmap_export", "sparse/0/points3D.bin", points[:2048])
    result = materialize([target], partition_key=DATASET, instance=instance, resources=resources_from_env(),
                         raise_on_error=False)
    assert not result.success
    message = _failure(result)
    assert (f"artifact {asset} of dataset '{DATASET}' is damaged ({what}); rerun from {asset}: "
            f"spaceport rerun {DATASET} --from {asset}") in message
    [job] = sagemaker.jobs.values()
    assert job.kind == kind and job.status == "Failed"
    if kind == "processing":  # the container's own message (training jobs carry it in FailureReason)
        assert job.exit_message.startswith(f"artifact {asset} of dataset '{DATASET}' is damaged")


def test_an_intact_input_passes_the_jobs_check(sagemaker, sagemaker_env, previous, instance) -> None:
    """The control: the same job on the untouched artifact gets past the check (and fails later, on a 13-byte
    'photo' that is no image, for its own reason)."""
    from spaceport_dagster.assets.sparse_reconstruction import sparse_reconstruction

    register_dataset(instance, DATASET)
    result = materialize([sparse_reconstruction], partition_key=DATASET, instance=instance,
                         resources=resources_from_env(), raise_on_error=False)
    assert not result.success
    message = _failure(result)
    assert "damaged" not in message and "stage sfm failed for dataset 'survey-7'" in message
