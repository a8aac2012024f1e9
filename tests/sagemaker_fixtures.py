"""Fixtures shared by the SageMaker tests: the emulator on the moto server, S3 storage, a launcher, uploads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import dataset_images
from .sagemaker_emulator import SageMakerEmulator

ROLE = "arn:aws:iam::123456789012:role/spaceport-sagemaker"
REPO_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/spaceport"
# Short polling so a test takes seconds; production defaults: poll 5 s (x1.5 up to 60 s), Pipes chunks 10 s.
FAST = {"SPACEPORT_SAGEMAKER_POLL_S": "0.1", "SPACEPORT_SAGEMAKER_MAX_POLL_S": "0.5",
        "SPACEPORT_SAGEMAKER_PIPES_INTERVAL_S": "0.2", "SPACEPORT_SAGEMAKER_STOP_TIMEOUT_S": "30"}


@pytest.fixture
def sagemaker(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerEmulator]:
    """The emulator, with boto3's SageMaker endpoint pointed at it (S3 and CloudWatch stay on moto)."""
    role_env = {"AWS_ENDPOINT_URL": aws_env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}
    with SageMakerEmulator(tmp_path / "sagemaker", role_env) as emulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", emulator.url)
        yield emulator


@pytest.fixture
def sagemaker_env(sagemaker: SageMakerEmulator, bucket: str, spaceport_home: Path,
                  monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SPACEPORT_COMPUTE=sagemaker with artifacts on the moto S3, as a deployment would set it."""
    env = {"SPACEPORT_COMPUTE": "sagemaker", "SPACEPORT_ARTIFACT_ROOT": f"s3://{bucket}/spaceport",
           "SPACEPORT_SAGEMAKER_ROLE_ARN": ROLE, "SPACEPORT_SAGEMAKER_IMAGE_REPO": REPO_URI,
           "SPACEPORT_SAGEMAKER_IMAGE_TAG": "test", **FAST}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def copy_photos(dataset: str, target: Path, count: int) -> Path:
    """`count` real photos of a shared dataset copied into an upload folder."""
    target.mkdir(parents=True, exist_ok=True)
    for photo in sorted(dataset_images(dataset).iterdir())[:count]:
        shutil.copy2(photo, target / photo.name)
    return target

