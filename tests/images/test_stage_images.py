"""The built stage images, run the way SageMaker runs them, end to end on a shared survey.

ingest -> sfm -> export -> train (the `preview` preset on the CPU, inside the CUDA training image) -> sog, each
stage a SageMaker job sent by the real launcher to the emulator (tests/sagemaker_emulator.py), which lays out
`/opt/ml` as SageMaker does and runs the image itself under buildah (tests/image_runner.py): its entry point, the
job's environment, Pipes context and messages through the moto S3. Nothing of the checkout runs inside.

Slow and needs the images, so it runs only when asked (not from .ci/run):

    nice -n 10 scripts/build-images.sh --debian-base --tag T           # where no registry can be reached
    SPACEPORT_IMAGE_TAG=T .venv/bin/python -m pytest tests/images -q

SPACEPORT_IMAGE_DATASET picks the shared survey (default brighton_beach); SPACEPORT_IMAGE_<STAGE IMAGE> (e.g.
SPACEPORT_IMAGE_TRAIN=localhost/spaceport-train:T-nokernels) runs another local image for that one. The last run
is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dagster import AssetCheckSeverity, materialize

from spaceport_dagster.assets.colmap_export import colmap_export
from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.assets.sogs_bundle import sogs_bundle
from spaceport_dagster.assets.sparse_reconstruction import sparse_reconstruction
from spaceport_dagster.assets.splat_model import splat_model
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.selection import resources_from_env

from ..conftest import dataset_images
from ..image_runner import BuildahImages, buildah_available, image_id
from ..sagemaker_emulator import SageMakerEmulator
from ..sagemaker_fixtures import FAST, REPO_URI, ROLE

TAG = os.environ.get("SPACEPORT_IMAGE_TAG", "")
SURVEY = os.environ.get("SPACEPORT_IMAGE_DATASET", "brighton_beach")
IMAGES = ("ingest", "sfm", "train", "sog")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TAG, reason="set SPACEPORT_IMAGE_TAG to the tag of scripts/build-images.sh's images"),
    pytest.mark.skipif(not buildah_available(), reason="runs the images with buildah"),
]


@pytest.fixture
def images() -> BuildahImages:
    return BuildahImages({f"{REPO_URI}-{name}:{TAG}": os.environ.get(f"SPACEPORT_IMAGE_{name.upper()}",
                                                                      f"localhost/spaceport-{name}:{TAG}")
                          for name in IMAGES})


@pytest.fixture
def image_sagemaker(images: BuildahImages, aws_env: str, bucket: str, spaceport_home: Path, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerEmulator]:
    role_env = {"AWS_ENDPOINT_URL": aws_env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}
    with SageMakerEmulator(tmp_path / "sagemaker", role_env, images=images) as emulator:
        env = {"AWS_ENDPOINT_URL_SAGEMAKER": emulator.url, "SPACEPORT_COMPUTE": "sagemaker",
               "SPACEPORT_ARTIFACT_ROOT": f"s3://{bucket}/spaceport", "SPACEPORT_SAGEMAKER_ROLE_ARN": ROLE,
               "SPACEPORT_SAGEMAKER_IMAGE_REPO": REPO_URI, "SPACEPORT_SAGEMAKER_IMAGE_TAG": TAG,
               **FAST, "SPACEPORT_SAGEMAKER_PIPES_INTERVAL_S": "1"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield emulator


def test_a_refused_upload_is_kept_aside_by_the_ingest_image(image_sagemaker: SageMakerEmulator, bucket: str,
                                                            instance, tmp_path: Path) -> None:
    """An upload without a photo: the ingest image runs, refuses the file with its reason, and its blocking check
    fails; the job's output comes home as image_set.rejected/<run id>/ and nothing is published."""
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "notes.txt").write_text("no photos here")
    register_dataset(instance, "no-photos")
    result = materialize([image_set], partition_key="no-photos", instance=instance,
                         resources=resources_from_env(), raise_on_error=False,
                         run_config={"ops": {"image_set": {"config": {"source": str(upload)}}}})
    assert not result.success
    [job] = image_sagemaker.jobs.values()
    assert job.status == "Completed" and job.kind == "processing"
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["enough_usable_images"] is False
    s3 = boto3.client("s3")
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="spaceport/no-photos/image_set/").get("KeyCount")
    rejected = s3.get_object(Bucket=bucket, Key=f"spaceport/no-photos/image_set.rejected/{result.run_id}/manifest.json")["Body"].read()
    assert "not an image" in rejected.decode()


def test_a_stage_crash_inside_its_image_reaches_dagster(image_sagemaker: SageMakerEmulator, bucket: str, aws_env: str,
                                                       instance) -> None:
    """colmap_export on a sparse_reconstruction artifact without a COLMAP model: the export stage raises inside the
    sfm image; its message travels through /opt/ml/output/message (a Processing job's ExitMessage) into the
    Dagster error, and nothing is published."""
    from spaceport_dagster.resources.artifact_store import S3ArtifactStore

    store = S3ArtifactStore(f"s3://{bucket}/spaceport", aws_env)
    for asset, name in (("image_set", "images/a.jpg"), ("sparse_reconstruction", "report.json")):
        with store.staging("no-model", asset) as staging:
            (staging.local_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (staging.local_dir / name).write_text("{}")
            store.publish(staging)
    register_dataset(instance, "no-model")
    result = materialize([colmap_export], partition_key="no-model", instance=instance,
                         resources=resources_from_env(), raise_on_error=False)
    assert not result.success
    [job] = image_sagemaker.jobs.values()
    assert job.status == "Failed" and job.failure_reason == "AlgorithmError: See job logs for more information"
    assert job.exit_message.startswith("FileNotFoundError: no COLMAP binary model"), job.exit_message
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "FileNotFoundError: no COLMAP binary model" in failure.step_failure_data.error.message
    assert not store.exists("no-model", "colmap_export")


def test_the_sfm_image_reconstructs_and_exports(image_sagemaker: SageMakerEmulator, bucket: str, instance) -> None:
    """ingest -> sfm -> export alone (the CPU images), for when the training image is not built yet."""
    source = dataset_images(SURVEY)
    dataset = SURVEY.replace("_", "-") + "-sfm"
    register_dataset(instance, dataset)
    start = time.monotonic()
    result = materialize([image_set, sparse_reconstruction, colmap_export], partition_key=dataset, instance=instance,
                         resources=resources_from_env(), raise_on_error=False,
                         run_config={"ops": {"image_set": {"config": {"source": str(source)}}}})
    jobs = list(image_sagemaker.jobs.values())
    print(f"\nimages {TAG}, survey {SURVEY}: ingest+sfm+export {time.monotonic() - start:.0f} s; per job "
          f"{ {job.stage: round((job.ended or 0) - (job.started or 0), 1) for job in jobs} }")
    assert [(job.stage, job.status) for job in jobs] == [("ingest", "Completed"), ("sfm", "Completed"),
                                                          ("export", "Completed")]
    assert result.success
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks[("sparse_reconstruction", "min_points")] and checks[("colmap_export", "every_image_has_correspondences")]
    manifest = boto3.client("s3").get_object(Bucket=bucket, Key=f"spaceport/{dataset}/colmap_export/_SUCCESS")["Body"]
    assert "sparse/0/points3D.bin" in {f["path"] for f in json.loads(manifest.read())["files"]}


def test_the_chain_runs_in_the_built_images(image_sagemaker: SageMakerEmulator, bucket: str, instance,
                                            record_property) -> None:
    missing = [image for image in image_sagemaker.images.images.values() if not image_id(image)]
    assert not missing, f"not built: {missing} (scripts/build-images.sh --tag {TAG})"
    source = dataset_images(SURVEY)
    dataset = SURVEY.replace("_", "-")
    register_dataset(instance, dataset)
    start = time.monotonic()
    result = materialize(
        [image_set, sparse_reconstruction, colmap_export, splat_model, sogs_bundle], partition_key=dataset,
        instance=instance, resources=resources_from_env(), raise_on_error=False,
        run_config={"ops": {"image_set": {"config": {"source": str(source)}},
                            "splat_model": {"config": {"preset": "preview"}},
                            "sogs_bundle": {"config": {"preset": "preview"}}}})
    wall = time.monotonic() - start
    jobs = list(image_sagemaker.jobs.values())
    timings = {job.stage: round((job.ended or 0) - (job.started or 0), 1) for job in jobs}
    record_property("stage_seconds", json.dumps(timings))
    record_property("chain_seconds", round(wall, 1))
    print(f"\nimages {TAG}, survey {SURVEY}: chain {wall:.0f} s; per job {timings}")
    for job in jobs:
        assert job.status == "Completed", (job.stage, job.failure_reason, job.exit_message, job.log_lines[-20:])
    assert result.success
    # every stage ran in its own image, through the image's entry point, not the checkout's
    kinds = {job.stage: (job.kind, image_sagemaker._image_uri(job).rsplit("/", 1)[1]) for job in jobs}
    assert kinds == {"ingest": ("processing", f"spaceport-ingest:{TAG}"), "sfm": ("processing", f"spaceport-sfm:{TAG}"),
                     "export": ("processing", f"spaceport-sfm:{TAG}"), "train": ("training", f"spaceport-train:{TAG}"),
                     "sog": ("processing", f"spaceport-sog:{TAG}")}
    assert all(job.environment()["OMP_WAIT_POLICY"] == "PASSIVE" for job in jobs)  # no spinning OpenMP workers
    for job in jobs:
        assert any(f"spaceport: running stage {job.stage}" in line and "/opt/ml at /opt/ml" in line
                   for line in job.log_lines), job.log_lines[:5]

    # the checks came back through Pipes over S3; every blocking one passed (a warning, e.g. the preview's 20 dB
    # absolute floor, may not: it is reported, and it did not stop the chain)
    evaluations = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    assert {asset for asset, _ in evaluations} == {"image_set", "sparse_reconstruction", "colmap_export",
                                                   "splat_model", "sogs_bundle"}
    failed = {key: c.severity.value for key, c in evaluations.items() if not c.passed}
    assert not [key for key, severity in failed.items() if severity == AssetCheckSeverity.ERROR.value], failed
    baseline = evaluations[("splat_model", "beats_mean_colour_baseline")].metadata
    psnr, flat = baseline["value"].value, baseline["baseline_psnr"].value
    record_property("splat_psnr_db", round(psnr, 2))
    record_property("failed_warnings", json.dumps(sorted(f"{a}.{c}" for a, c in failed)))
    print(f"preview splat: test-view PSNR {psnr:.2f} dB vs flat {flat:.2f} dB; failed warnings: {failed or 'none'}")
    assert psnr >= flat + 3.0

    s3 = boto3.client("s3")

    def files(asset: str) -> set[str]:
        manifest = s3.get_object(Bucket=bucket, Key=f"spaceport/{dataset}/{asset}/_SUCCESS")["Body"].read()
        return {f["path"] for f in json.loads(manifest)["files"]}

    assert len([p for p in files("image_set") if p.startswith("images/")]) == len(list(source.iterdir()))
    assert {"sparse/cameras.bin", "sparse/images.bin", "sparse/points3D.bin"} <= files("sparse_reconstruction")
    assert "sparse/0/points3D.bin" in files("colmap_export")
    splat = files("splat_model")
    assert "point_cloud.ply" in splat
    # checkpoints were written beside the artifact during training, never into it, and are gone now
    assert not [p for p in splat if p.startswith("checkpoints/")]
    train = next(job for job in jobs if job.stage == "train")
    assert train.request["CheckpointConfig"]["S3Uri"] == f"s3://{bucket}/spaceport/{dataset}/splat_model.checkpoints/"
    assert any(uri.startswith(train.request["CheckpointConfig"]["S3Uri"]) for uri in train.uploaded)
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"spaceport/{dataset}/splat_model.checkpoints/").get("KeyCount")
    assert any(p.endswith(".sog") for p in files("sogs_bundle"))
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="spaceport/_sagemaker/").get("KeyCount")
