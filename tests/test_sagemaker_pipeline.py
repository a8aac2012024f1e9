"""A partition through the assets with SageMaker compute, against the local emulator and the moto S3."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
from dagster import materialize

from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.selection import resources_from_env

from .sagemaker_fixtures import ROLE, copy_photos

pytest_plugins = ("tests.sagemaker_fixtures",)  # the sagemaker, sagemaker_env fixtures

DATASET = "lund-six"


def test_image_set_runs_as_processing_job(sagemaker, sagemaker_env, instance, tmp_path: Path) -> None:
    upload = copy_photos("lund", tmp_path / "upload", 6)
    register_dataset(instance, DATASET)
    result = materialize([image_set], partition_key=DATASET, instance=instance, resources=resources_from_env(),
                         run_config={"ops": {"image_set": {"config": {"source": str(upload)}}}})
    assert result.success
    [request] = sagemaker.created("processing")
    name = request["ProcessingJobName"]
    assert re.fullmatch(rf"sp-{DATASET}-ingest-{result.run_id[:8]}-a0", name)
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1, "InstanceType": "ml.c6i.xlarge", "VolumeSizeInGB": 30}
    assert request["AppSpecification"] == {
        "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/spaceport-ingest:test"}
    assert request["RoleArn"] == ROLE
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    bucket = sagemaker_env["SPACEPORT_ARTIFACT_ROOT"][5:].split("/")[0]
    [source] = request["ProcessingInputs"]
    assert source["InputName"] == "source"
    assert source["S3Input"]["S3Uri"] == f"s3://{bucket}/spaceport/{DATASET}/_sagemaker/{name}/sources/source/"
    assert source["S3Input"]["LocalPath"] == "/opt/ml/processing/input/source"
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/artifact"
    assert re.fullmatch(rf"s3://{bucket}/spaceport/{DATASET}/image_set/\d{{8}}T\d{{6}}-[0-9a-f]{{8}}/",
                        output["S3Output"]["S3Uri"])
    assert all(len(v) <= 256 for v in request["Environment"].values())
    assert request["Environment"]["SPACEPORT_STAGE"] == "ingest"

    s3 = boto3.client("s3")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"spaceport/{DATASET}/image_set/_SUCCESS")["Body"].read())
    published = {f["path"] for f in manifest["files"]}
    assert {f"images/{p.name}" for p in upload.iterdir()} | {"manifest.json"} == published
    version_prefix = output["S3Output"]["S3Uri"].split(f"{bucket}/", 1)[1]
    assert manifest["version"] in version_prefix
    stage_manifest = json.loads(s3.get_object(Bucket=bucket, Key=version_prefix + "manifest.json")["Body"].read())
    assert len(stage_manifest["images"]) == 6
    # scratch (uploaded sources, Pipes context and messages) is gone
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"spaceport/{DATASET}/_sagemaker/").get("KeyCount")

    mat = result.asset_materializations_for_node("image_set")[0]
    assert mat.metadata["sagemaker_job_name"].value == name
    assert mat.metadata["sagemaker_instance_type"].value == "ml.c6i.xlarge"
    billable = mat.metadata["sagemaker_billable_seconds"].value
    assert billable > 0
    assert abs(mat.metadata["sagemaker_estimated_cost_usd"].value - round(billable / 3600 * 0.204, 4)) < 1e-9
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["enough_usable_images"] is True
    # the container's output reached the run log through CloudWatch
    job = sagemaker.jobs[name]
    assert any("running stage ingest" in line for line in job.log_lines)
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(re.match(r"\[algo-1-\d+\] spaceport: running stage ingest", m) for m in logged), logged


def test_training_job_path_with_spot_and_model_archive(sagemaker, sagemaker_env, instance, tmp_path: Path,
                                                       monkeypatch) -> None:
    """The GPU stage's job kind (Training job: channels, /opt/ml/model as model.tar.gz, checkpoint channel,
    managed spot), exercised with a real stage that runs anywhere: ingest, switched to a Training job."""
    monkeypatch.setenv("SPACEPORT_SAGEMAKER_STAGES",
                       '{"ingest": {"job_kind": "training", "instance_type": "ml.g5.xlarge", "spot": true}}')
    upload = copy_photos("lund", tmp_path / "upload", 5)
    register_dataset(instance, DATASET)
    result = materialize([image_set], partition_key=DATASET, instance=instance, resources=resources_from_env(),
                         run_config={"ops": {"image_set": {"config": {"source": str(upload)}}}})
    assert result.success
    [request] = sagemaker.created("training")
    name = request["TrainingJobName"]
    bucket = sagemaker_env["SPACEPORT_ARTIFACT_ROOT"][5:].split("/")[0]
    scratch = f"s3://{bucket}/spaceport/{DATASET}/_sagemaker/{name}/"
    assert request["InputDataConfig"] == [{"ChannelName": "source", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": scratch + "sources/source/", "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File"}]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"] == {"S3Uri": scratch + "checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert request["Environment"]["SPACEPORT_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    job = sagemaker.jobs[name]
    assert job.status == "Completed" and job.model_uri == scratch + f"output/{name}/output/model.tar.gz"

    s3 = boto3.client("s3")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"spaceport/{DATASET}/image_set/_SUCCESS")["Body"].read())
    assert {f["path"] for f in manifest["files"]} == {f"images/{p.name}" for p in upload.iterdir()} | {"manifest.json"}
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"spaceport/{DATASET}/_sagemaker/").get("KeyCount")
    mat = result.asset_materializations_for_node("image_set")[0]
    assert mat.metadata["sagemaker_job_kind"].value == "training"
    assert mat.metadata["sagemaker_spot"].value is True
    billable = mat.metadata["sagemaker_billable_seconds"].value
    assert billable >= 1
    assert mat.metadata["sagemaker_estimated_cost_usd"].value == round(billable / 3600 * 1.408, 4)
