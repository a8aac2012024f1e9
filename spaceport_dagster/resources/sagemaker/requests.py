"""The CreateProcessingJob / CreateTrainingJob requests, and the container paths the stage sees in each.

CPU stages run as Processing jobs: input channels land in `/opt/ml/processing/input/<name>`, the stage writes
`/opt/ml/processing/output/artifact`, uploaded at the end straight to the artifact's staging version prefix.
The GPU stage runs as a Training job: channels in `/opt/ml/input/data/<name>`, output `/opt/ml/model` (SageMaker
uploads it as `model.tar.gz` under the job's scratch prefix), checkpoints synced with `/opt/ml/checkpoints`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .settings import StageSettings

PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_OUTPUT = "/opt/ml/processing/output/artifact"
TRAINING_INPUT = "/opt/ml/input/data"
TRAINING_OUTPUT = "/opt/ml/model"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
FAILURE_PATH = "/opt/ml/output/failure"
ENV_VALUE_LIMIT = 256  # Processing jobs cap environment values at 256 characters (Training at 512)


@dataclass
class JobPlan:
    """Everything a job needs besides the Pipes environment."""

    name: str
    settings: StageSettings
    image_uri: str
    role_arn: str
    channels: dict[str, str]  # input name -> S3 prefix
    output_uri: str  # Processing: the staging version prefix; Training: where model.tar.gz goes
    checkpoint_uri: str = ""
    tags: dict[str, str] | None = None
    # input name -> {"dataset", "asset", "manifest"}: the published artifacts a channel copies, for the stage to check
    input_artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_training(self) -> bool:
        return self.settings.job_kind == "training"

    def container_inputs(self) -> dict[str, str]:
        base = TRAINING_INPUT if self.is_training else PROCESSING_INPUT
        return {name: f"{base}/{name}" for name in self.channels}

    @property
    def container_output(self) -> str:
        return TRAINING_OUTPUT if self.is_training else PROCESSING_OUTPUT

    def request(self, environment: dict[str, str]) -> dict[str, Any]:
        too_long = {k: len(v) for k, v in environment.items() if len(v) > ENV_VALUE_LIMIT}
        if too_long:
            raise ValueError(f"environment values over {ENV_VALUE_LIMIT} characters: {too_long}")
        return training_request(self, environment) if self.is_training else processing_request(self, environment)


def _tags(plan: JobPlan) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted((plan.tags or {}).items())]


def processing_request(plan: JobPlan, environment: dict[str, str]) -> dict[str, Any]:
    s = plan.settings
    return {
        "ProcessingJobName": plan.name,
        "RoleArn": plan.role_arn,
        "AppSpecification": {"ImageUri": plan.image_uri},
        "Environment": dict(environment),
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": s.instance_count, "InstanceType": s.instance_type,
                              "VolumeSizeInGB": s.volume_gb},
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": s.max_runtime_s},
        "ProcessingInputs": [
            {
                "InputName": name,
                "S3Input": {"S3Uri": uri, "LocalPath": f"{PROCESSING_INPUT}/{name}", "S3DataType": "S3Prefix",
                            "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"},
            }
            for name, uri in sorted(plan.channels.items())
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {"OutputName": "artifact",
                 "S3Output": {"S3Uri": plan.output_uri, "LocalPath": PROCESSING_OUTPUT, "S3UploadMode": "EndOfJob"}},
            ],
        },
        "Tags": _tags(plan),
    }


def training_request(plan: JobPlan, environment: dict[str, str]) -> dict[str, Any]:
    s = plan.settings
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": s.max_runtime_s}
    if s.spot:
        stopping["MaxWaitTimeInSeconds"] = s.max_wait
    request: dict[str, Any] = {
        "TrainingJobName": plan.name,
        "RoleArn": plan.role_arn,
        "AlgorithmSpecification": {"TrainingImage": plan.image_uri, "TrainingInputMode": "File"},
        "Environment": dict(environment),
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                "S3DataDistributionType": "FullyReplicated"}},
                "InputMode": "File",
            }
            for name, uri in sorted(plan.channels.items())
        ],
        "OutputDataConfig": {"S3OutputPath": plan.output_uri},
        "ResourceConfig": {"InstanceType": s.instance_type, "InstanceCount": s.instance_count,
                           "VolumeSizeInGB": s.volume_gb},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": s.spot,
        "Tags": _tags(plan),
    }
    if plan.checkpoint_uri:
        request["CheckpointConfig"] = {"S3Uri": plan.checkpoint_uri, "LocalPath": CHECKPOINT_DIR}
    return request
