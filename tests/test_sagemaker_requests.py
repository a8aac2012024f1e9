"""The exact SageMaker job requests per stage, job names, settings from the environment, cost estimates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from spaceport_dagster.assets.splat_model import splat_model
from spaceport_dagster.resources.artifact_store import S3ArtifactStore
from spaceport_dagster.resources.compute import StageRequest
from spaceport_dagster.resources.sagemaker import SageMakerStageLauncher
from spaceport_dagster.resources.sagemaker.costs import estimate_cost
from spaceport_dagster.resources.sagemaker.env import launcher_from_env
from spaceport_dagster.resources.sagemaker.naming import JOB_NAME_PATTERN, job_name
from spaceport_dagster.resources.sagemaker.settings import stage_settings

ROLE = "arn:aws:iam::123456789012:role/spaceport-sagemaker"
REPO_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spaceport"
ENV = {"DAGSTER_PIPES_CONTEXT": "ctx", "SPACEPORT_STAGE": "x"}
DATASET = "harbour-2"
RUN_ID = "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
UPSTREAM = {"image_set": "image_set", "sparse_reconstruction": "sparse_reconstruction",
            "colmap_export": "colmap_export", "splat_model": "splat_model"}


@pytest.fixture
def store(bucket: str, aws_env: str) -> S3ArtifactStore:
    store = S3ArtifactStore(f"s3://{bucket}/art", aws_env)
    for asset in UPSTREAM:
        with store.staging(DATASET, asset) as staging:
            (staging.local_dir / "file.bin").write_bytes(b"x")
            store.publish(staging)
    return store


def _plan(store: S3ArtifactStore, stage: str, artifacts: dict[str, str], launcher: SageMakerStageLauncher | None = None):
    launcher = launcher or SageMakerStageLauncher(role_arn=ROLE, image_repo=REPO_URI, image_tag="v1")
    request = StageRequest(stage, DATASET, f"{stage}-asset", artifacts, resumable=stage == "train")
    with store.staging(DATASET, request.asset) as staging:
        name = job_name(DATASET, stage, RUN_ID, 0)
        return launcher.plan(store, request, staging, name, RUN_ID), staging, name


def _version(store: S3ArtifactStore, asset: str) -> str:
    return store.version_uri(DATASET, asset)


def test_sfm_processing_job_request(store: S3ArtifactStore) -> None:
    plan, staging, name = _plan(store, "sfm", {"image_set": "image_set"})
    assert name == "sp-harbour-2-sfm-0f1e2d3c-a0"
    assert plan.container_inputs() == {"image_set": "/opt/ml/processing/input/image_set"}
    assert plan.container_output == "/opt/ml/processing/output/artifact"
    assert plan.request(ENV) == {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": f"{REPO_URI}-sfm:v1"},
        "Environment": ENV,
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.c6i.2xlarge",
                                                  "VolumeSizeInGB": 100}},
        "StoppingCondition": {"MaxRuntimeInSeconds": 21600},
        "ProcessingInputs": [{"InputName": "image_set", "S3Input": {
            "S3Uri": _version(store, "image_set"), "LocalPath": "/opt/ml/processing/input/image_set",
            "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "artifact", "S3Output": {
            "S3Uri": staging.remote_prefix, "LocalPath": "/opt/ml/processing/output/artifact",
            "S3UploadMode": "EndOfJob"}}]},
        "Tags": [{"Key": "dagster:run-id", "Value": RUN_ID}, {"Key": "spaceport:asset", "Value": "sfm-asset"},
                 {"Key": "spaceport:dataset", "Value": DATASET}, {"Key": "spaceport:stage", "Value": "sfm"}],
    }
    assert re.fullmatch(rf"s3://{store.bucket}/art/{DATASET}/sfm-asset/\d{{8}}T\d{{6}}-[0-9a-f]{{8}}/",
                        staging.remote_prefix)


def test_export_and_sog_processing_jobs(store: S3ArtifactStore) -> None:
    export, _, _ = _plan(store, "export", {"sparse": "sparse_reconstruction", "image_set": "image_set"})
    request = export.request(ENV)
    assert request["AppSpecification"] == {"ImageUri": f"{REPO_URI}-sfm:v1"}  # export shares the SfM image
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c6i.2xlarge"
    assert [(i["InputName"], i["S3Input"]["S3Uri"], i["S3Input"]["LocalPath"]) for i in request["ProcessingInputs"]] == [
        ("image_set", _version(store, "image_set"), "/opt/ml/processing/input/image_set"),
        ("sparse", _version(store, "sparse_reconstruction"), "/opt/ml/processing/input/sparse")]
    sog, _, _ = _plan(store, "sog", {"splat": "splat_model"})
    request = sog.request(ENV)
    assert request["ProcessingResources"]["ClusterConfig"] == {"InstanceCount": 1, "InstanceType": "ml.c6i.4xlarge",
                                                               "VolumeSizeInGB": 50}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert request["AppSpecification"] == {"ImageUri": f"{REPO_URI}-sog:v1"}


def test_training_job_request_with_spot_and_checkpoints(store: S3ArtifactStore) -> None:
    plan, _, name = _plan(store, "train", {"export": "colmap_export"})
    scratch = f"s3://{store.bucket}/art/_sagemaker/{name}/"
    assert plan.container_inputs() == {"export": "/opt/ml/input/data/export"}
    assert plan.container_output == "/opt/ml/model"
    assert plan.request(ENV) == {
        "TrainingJobName": "sp-harbour-2-train-0f1e2d3c-a0",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": f"{REPO_URI}-train:v1", "TrainingInputMode": "File"},
        "Environment": ENV,
        "InputDataConfig": [{"ChannelName": "export", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": _version(store, "colmap_export"),
            "S3DataDistributionType": "FullyReplicated"}}, "InputMode": "File"}],
        "OutputDataConfig": {"S3OutputPath": scratch + "output/"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 100},
        "StoppingCondition": {"MaxRuntimeInSeconds": 28800, "MaxWaitTimeInSeconds": 57600},
        "EnableManagedSpotTraining": True,
        # beside the artifact, not in the job's scratch: a retried step (a new job) resumes from them
        "CheckpointConfig": {"S3Uri": f"s3://{store.bucket}/art/{DATASET}/train-asset.checkpoints/",
                             "LocalPath": "/opt/ml/checkpoints"},
        "Tags": [{"Key": "dagster:run-id", "Value": RUN_ID}, {"Key": "spaceport:asset", "Value": "train-asset"},
                 {"Key": "spaceport:dataset", "Value": DATASET}, {"Key": "spaceport:stage", "Value": "train"}],
    }
    # on-demand override: no MaxWaitTimeInSeconds, spot off
    launcher = SageMakerStageLauncher(role_arn=ROLE, image_repo=REPO_URI,
                                      stages={"train": {"spot": False, "instance_type": "ml.g5.2xlarge"}})
    plan, _, _ = _plan(store, "train", {"export": "colmap_export"}, launcher)
    request = plan.request(ENV)
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 28800}
    assert request["EnableManagedSpotTraining"] is False
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"


def test_environment_values_are_capped(store: S3ArtifactStore) -> None:
    plan, _, _ = _plan(store, "sfm", {"image_set": "image_set"})
    with pytest.raises(ValueError, match="over 256 characters"):
        plan.request({"DAGSTER_PIPES_CONTEXT": "x" * 257})


def test_job_names_are_valid_and_unique_per_attempt() -> None:
    names = {job_name(DATASET, "train", RUN_ID, attempt) for attempt in range(3)}
    names.add(job_name(DATASET, "train", "9" + RUN_ID[1:], 0))
    assert len(names) == 4
    long_id = "a" * 40 + "-" + "b" * 22  # the longest dataset id the partition rules allow (63)
    for dataset in (long_id, "x", "a-", "abc-def-0123456789"):
        for stage in ("ingest", "sfm", "export", "train", "sog"):
            name = job_name(dataset, stage, RUN_ID, 12)
            assert JOB_NAME_PATTERN.fullmatch(name) and len(name) <= 63, name
            assert name.endswith(f"-{stage}-0f1e2d3c-a12")
    # two long ids sharing their first 40 characters still get different names
    assert job_name(long_id, "sfm", RUN_ID, 0) != job_name("a" * 40 + "-" + "c" * 22, "sfm", RUN_ID, 0)


def test_settings_from_environment() -> None:
    env = {"SPACEPORT_SAGEMAKER_ROLE_ARN": ROLE, "SPACEPORT_SAGEMAKER_IMAGE_REPO": REPO_URI,
           "SPACEPORT_SAGEMAKER_REGION": "eu-west-1", "SPACEPORT_SAGEMAKER_TRAIN_SPOT": "false",
           "SPACEPORT_SAGEMAKER_SFM_INSTANCE_TYPE": "ml.c6i.4xlarge",
           "SPACEPORT_SAGEMAKER_STAGES": '{"sog": {"volume_gb": 80}, "train": {"image_uri": "my/train:1"}}',
           "SPACEPORT_SAGEMAKER_PRICES": '{"ml.c6i.4xlarge": 1.0}'}
    launcher = launcher_from_env(env)
    assert launcher.region == "eu-west-1"
    assert launcher.settings_for("train").spot is False
    assert launcher.image_for("train", launcher.settings_for("train")) == "my/train:1"
    assert launcher.settings_for("sfm").instance_type == "ml.c6i.4xlarge"
    assert launcher.settings_for("sog").volume_gb == 80
    assert launcher.image_for("export", launcher.settings_for("export")) == f"{REPO_URI}-sfm:latest"
    sfm = launcher.settings_for("sfm")
    assert launcher.image_for("sfm", sfm, {"engine": "opensfm"}) == f"{REPO_URI}-opensfm:latest"
    assert launcher.image_for("sfm", sfm, {"engine": "colmap"}) == f"{REPO_URI}-sfm:latest"
    assert launcher.prices == {"ml.c6i.4xlarge": 1.0}
    with pytest.raises(ValueError, match="SPACEPORT_SAGEMAKER_ROLE_ARN"):
        launcher_from_env({})
    with pytest.raises(ValueError, match=r"unknown SageMaker setting\(s\) \['instance'\] for stage 'sfm'"):
        launcher_from_env({**env, "SPACEPORT_SAGEMAKER_STAGES": '{"sfm": {"instance": "ml.c6i.large"}}'})
    with pytest.raises(ValueError, match="managed spot capacity exists only for training jobs"):
        stage_settings("sfm", {"sfm": {"spot": True}})


def test_cost_estimates() -> None:
    assert estimate_cost("ml.g5.xlarge", 3600) == 1.408
    assert estimate_cost("ml.c6i.2xlarge", 1800, instance_count=2) == 0.408
    assert estimate_cost("ml.c6i.4xlarge", 900, prices={"ml.c6i.4xlarge": 2.0}) == 0.5
    assert estimate_cost("ml.p5.48xlarge", 60) is None


def test_local_storage_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from dagster import Failure, build_asset_context

    from spaceport_dagster.resources.artifact_store import LocalArtifactStore

    store = LocalArtifactStore(tmp_path)
    launcher = SageMakerStageLauncher(role_arn=ROLE, image_repo=REPO_URI)
    with store.staging(DATASET, "image_set") as staging, pytest.raises(Failure, match="SageMaker compute needs artifacts on S3"):
        launcher.launch(build_asset_context(), store, StageRequest("ingest", DATASET, "image_set"), staging)


def test_shipped_instance_config(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[1] / "spaceport_dagster" / "dagster.yaml"
    assert yaml.safe_load(shipped.read_text())["telemetry"] == {"enabled": False}
    (tmp_path / "dagster.yaml").write_text(shipped.read_text())
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 4
        assert config.pool_config.default_pool_limit == 1
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
    # the training asset is the one asset in the `gpu` pool
    assert splat_model.op.pool == "gpu"


def test_pipes_pointers_fit_processing_environment_limit(aws_env: str) -> None:
    """Worst case: a 63-character bucket, a 20-character prefix, a 63-character dataset id, a 2-digit retry."""
    import random
    import string

    import boto3
    from dagster_pipes import encode_param

    from spaceport_dagster.resources.sagemaker.pipes_io import pipes_io

    rng = random.Random(7)
    bucket = "b" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=62))
    boto3.client("s3").create_bucket(Bucket=bucket)
    store = S3ArtifactStore(f"s3://{bucket}/" + "".join(rng.choices(string.ascii_lowercase, k=19)), aws_env)
    dataset = "".join(rng.choices(string.ascii_lowercase + string.digits, k=63))
    name = job_name(dataset, "export", RUN_ID, 12)
    injector, reader = pipes_io(bucket, store.client, SageMakerStageLauncher.scratch_key(store, name), 10)
    with injector.inject_context({"extras": {}}) as context_params:
        assert len(encode_param(context_params)) <= 256
        assert len(encode_param(reader.params())) <= 256  # what read_messages hands the stage


def _validate_against_service_model(operation: str, params: dict) -> str:
    """botocore's own parameter validation of `params` for SageMaker's `operation` (what boto3 runs before it sends
    a request, and what the emulator does not): the errors as text, empty when valid."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker").operation_model(operation)
    return ParamValidator().validate(params, model.input_shape).generate_report()


@pytest.mark.parametrize("stage,artifacts", [
    ("sfm", {"image_set": "image_set"}), ("export", {"sparse": "sparse_reconstruction", "image_set": "image_set"}),
    ("train", {"export": "colmap_export"}), ("sog", {"splat": "splat_model"}), ("ingest", {}),
])
def test_requests_pass_botocore_validation(store: S3ArtifactStore, stage: str, artifacts: dict[str, str]) -> None:
    plan, _, _ = _plan(store, stage, artifacts)
    env = {"DAGSTER_PIPES_CONTEXT": "x" * 200, "DAGSTER_PIPES_MESSAGES": "y" * 200, "SPACEPORT_STAGE": stage}
    request = plan.request(env)
    operation = "CreateTrainingJob" if plan.is_training else "CreateProcessingJob"
    assert _validate_against_service_model(operation, request) == ""
    if plan.is_training:  # the on-demand variant too
        launcher = SageMakerStageLauncher(role_arn=ROLE, image_repo=REPO_URI, stages={"train": {"spot": False}})
        plan, _, _ = _plan(store, stage, artifacts, launcher)
        assert _validate_against_service_model(operation, plan.request(env)) == ""
    # the validator does refuse a malformed request (a string volume size, a key SageMaker does not know)
    broken = {**request, "VolumeSizeInGB": 100}
    assert "Unknown parameter in input: \"VolumeSizeInGB\"" in _validate_against_service_model(operation, broken)


def test_stage_option_loaders_refuse_typos_for_every_stage() -> None:
    from spaceport_dagster.stages.config import ConfigError
    from spaceport_dagster.stages.options import LOADERS, validate_options

    assert set(LOADERS) == {"ingest", "sfm", "export", "train", "merge", "sog"}
    for stage in LOADERS:
        validate_options(stage, {})  # the defaults are valid
        with pytest.raises(ConfigError, match=rf"^stage {stage}: .*no option\(s\) stpes"):
            validate_options(stage, {"stpes": 10})
    with pytest.raises(ConfigError, match="stage train: unknown preset 'fast'"):
        validate_options("train", {"preset": "fast"})
    assert validate_options("train", {"preset": "preview"}).steps > 0
