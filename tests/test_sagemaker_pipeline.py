"""A partition through the assets with SageMaker compute, against the local emulator and the moto S3."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pycolmap
import pytest
from dagster import materialize

from spaceport_dagster.assets.colmap_export import colmap_export
from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.assets.sparse_reconstruction import sparse_reconstruction
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.artifact_store import S3ArtifactStore
from spaceport_dagster.resources.selection import resources_from_env
from spaceport_dagster.run_events import flat_metadata

pytest.register_assert_rewrite("tests.sagemaker_fixtures")  # it is also a plugin (below)
from .sagemaker_fixtures import ROLE, copy_photos  # noqa: E402

pytest_plugins = ("tests.sagemaker_fixtures",)  # the sagemaker, sagemaker_env fixtures

DATASET = "brighton-18"
TRAIN_DATASET = "lund-five"


def _version_prefix(request: dict, bucket: str) -> str:
    return request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]


def test_partition_through_sfm_and_export_on_sagemaker(sagemaker, sagemaker_env, instance, tmp_path: Path) -> None:
    """image_set -> sparse_reconstruction -> colmap_export, each a Processing job running the real stage on
    18 real drone photos (SfM at 1024 px so the test stays short on 2 cores)."""
    upload = copy_photos("brighton_beach", tmp_path / "upload", 18)
    register_dataset(instance, DATASET)
    result = materialize(
        [image_set, sparse_reconstruction, colmap_export], partition_key=DATASET, instance=instance,
        resources=resources_from_env(),
        run_config={"ops": {"image_set": {"config": {"source": str(upload)}},
                            "sparse_reconstruction": {"config": {"options": {"max_image_size": 1024}}}}})
    assert result.success
    ingest, sfm, export = sagemaker.created("processing")
    assert [r["Environment"]["SPACEPORT_STAGE"] for r in (ingest, sfm, export)] == ["ingest", "sfm", "export"]
    bucket = sagemaker_env["SPACEPORT_ARTIFACT_ROOT"][5:].split("/")[0]
    s3 = boto3.client("s3")

    def manifest(asset: str) -> dict:
        return json.loads(s3.get_object(Bucket=bucket, Key=f"spaceport/{DATASET}/{asset}/_SUCCESS")["Body"].read())

    # -- image_set: the exact request, the published files, the job metadata
    name = ingest["ProcessingJobName"]
    assert re.fullmatch(rf"sp-{DATASET}-ingest-{result.run_id[:8]}-a0", name)
    assert ingest["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1, "InstanceType": "ml.c6i.xlarge", "VolumeSizeInGB": 30}
    assert ingest["AppSpecification"] == {
        "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/spaceport-ingest:test"}
    assert ingest["RoleArn"] == ROLE
    assert ingest["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    [source] = ingest["ProcessingInputs"]
    assert source["InputName"] == "source"
    assert source["S3Input"]["S3Uri"] == f"s3://{bucket}/spaceport/_sagemaker/{name}/sources/source/"
    assert source["S3Input"]["LocalPath"] == "/opt/ml/processing/input/source"
    [output] = ingest["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/artifact"
    assert re.fullmatch(rf"s3://{bucket}/spaceport/{DATASET}/image_set/\d{{8}}T\d{{6}}-[0-9a-f]{{8}}/",
                        output["S3Output"]["S3Uri"])
    assert all(len(v) <= 256 for v in ingest["Environment"].values())
    images = manifest("image_set")
    assert {f["path"] for f in images["files"]} == {f"images/{p.name}" for p in upload.iterdir()} | {"manifest.json"}
    assert output["S3Output"]["S3Uri"].endswith(f"/image_set/{images['version']}/")
    mat = result.asset_materializations_for_node("image_set")[0]
    assert flat_metadata(mat.metadata)["sagemaker_job_name"] == name
    assert flat_metadata(mat.metadata)["sagemaker_instance_type"] == "ml.c6i.xlarge"
    billable = flat_metadata(mat.metadata)["sagemaker_billable_seconds"]
    assert billable > 0
    assert abs(flat_metadata(mat.metadata)["sagemaker_estimated_cost_usd"] - round(billable / 3600 * 0.204, 4)) < 1e-9
    # the container's output reached the run log through CloudWatch
    assert any("running stage ingest" in line for line in sagemaker.jobs[name].log_lines)
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(re.match(r"\[algo-1-\d+\] spaceport: running stage ingest", m) for m in logged)

    # -- sparse_reconstruction reads the published image_set version; export reads both upstream versions
    assert sfm["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c6i.2xlarge"
    assert sfm["AppSpecification"]["ImageUri"].endswith("/spaceport-sfm:test")
    base = f"s3://{bucket}/spaceport/{DATASET}"
    assert [(i["InputName"], i["S3Input"]["S3Uri"]) for i in sfm["ProcessingInputs"]] == [
        ("image_set", f"{base}/image_set/{images['version']}/")]
    sparse = manifest("sparse_reconstruction")
    assert {"sparse/cameras.bin", "sparse/images.bin", "sparse/points3D.bin", "report.json"} <= {
        f["path"] for f in sparse["files"]}
    assert export["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c6i.2xlarge"
    assert export["AppSpecification"]["ImageUri"].endswith("/spaceport-sfm:test")
    assert [(i["InputName"], i["S3Input"]["S3Uri"]) for i in export["ProcessingInputs"]] == [
        ("image_set", f"{base}/image_set/{images['version']}/"),
        ("sparse", f"{base}/sparse_reconstruction/{sparse['version']}/")]
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks[("image_set", "enough_usable_images")]
    assert checks[("sparse_reconstruction", "min_points")] and checks[("sparse_reconstruction", "registered_fraction")]
    assert checks[("colmap_export", "every_image_has_correspondences")]

    store = S3ArtifactStore(sagemaker_env["SPACEPORT_ARTIFACT_ROOT"], cache_dir=tmp_path / "cache")
    model = pycolmap.Reconstruction(str(store.fetch(DATASET, "colmap_export") / "sparse" / "0"))
    assert model.num_reg_images() == 18 and model.num_points3D() >= 1000
    assert {c.model.name for c in model.cameras.values()} == {"PINHOLE"}
    sfm_meta = result.asset_materializations_for_node("sparse_reconstruction")[0].metadata
    assert flat_metadata(sfm_meta)["sagemaker_job_name"] == sfm["ProcessingJobName"]
    # every job's scratch (uploaded sources, Pipes context and messages) is gone
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="spaceport/_sagemaker/").get("KeyCount")


def test_training_job_path_with_spot_and_model_archive(sagemaker, sagemaker_env, instance, tmp_path: Path,
                                                       monkeypatch) -> None:
    """The GPU stage's job kind (Training job: channels, /opt/ml/model as model.tar.gz, checkpoint channel,
    managed spot), exercised with a real stage that runs anywhere: ingest, switched to a Training job."""
    monkeypatch.setenv("SPACEPORT_SAGEMAKER_STAGES",
                       '{"ingest": {"job_kind": "training", "instance_type": "ml.g5.xlarge", "spot": true}}')
    upload = copy_photos("lund", tmp_path / "upload", 5)
    register_dataset(instance, TRAIN_DATASET)
    result = materialize([image_set], partition_key=TRAIN_DATASET, instance=instance, resources=resources_from_env(),
                         run_config={"ops": {"image_set": {"config": {"source": str(upload)}}}})
    assert result.success
    [request] = sagemaker.created("training")
    name = request["TrainingJobName"]
    bucket = sagemaker_env["SPACEPORT_ARTIFACT_ROOT"][5:].split("/")[0]
    scratch = f"s3://{bucket}/spaceport/_sagemaker/{name}/"
    assert request["InputDataConfig"] == [{"ChannelName": "source", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": scratch + "sources/source/", "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File"}]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert "CheckpointConfig" not in request  # only a resumable stage (train) gets a checkpoint channel
    job = sagemaker.jobs[name]
    assert job.status == "Completed" and job.model_uri == scratch + f"output/{name}/output/model.tar.gz"

    s3 = boto3.client("s3")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"spaceport/{TRAIN_DATASET}/image_set/_SUCCESS")["Body"].read())
    assert {f["path"] for f in manifest["files"]} == {f"images/{p.name}" for p in upload.iterdir()} | {"manifest.json"}
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="spaceport/_sagemaker/").get("KeyCount")
    mat = result.asset_materializations_for_node("image_set")[0]
    assert flat_metadata(mat.metadata)["sagemaker_job_kind"] == "training"
    assert flat_metadata(mat.metadata)["sagemaker_spot"] is True
    billable = flat_metadata(mat.metadata)["sagemaker_billable_seconds"]
    assert billable >= 1
    assert flat_metadata(mat.metadata)["sagemaker_estimated_cost_usd"] == round(billable / 3600 * 1.408, 4)
