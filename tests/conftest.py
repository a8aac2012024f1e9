"""Shared fixtures: paths to the real datasets, a real S3-compatible server (moto), a temporary Dagster instance."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
DATASETS = SHARED / "datasets"
FIXTURES = SHARED / "fixtures"


def dataset_images(name: str) -> Path:
    path = DATASETS / name / "images"
    if not path.is_dir():
        pytest.skip(f"shared dataset {name} not found at {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto in server mode: a real HTTP endpoint speaking the S3 (and SES, SageMaker) APIs."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the moto server with dummy credentials; returns the endpoint URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return moto_server


@pytest.fixture
def bucket(aws_env: str) -> str:
    """A fresh bucket on the moto server."""
    import uuid

    import boto3

    name = f"spaceport-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def dagster_home(folder: Path) -> Path:
    """`folder`, made a Dagster home with telemetry off: where every test instance here keeps its runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return folder


def resources_for_test_stages(home: Path) -> dict[str, Any]:
    """`storage` under `home/artifacts` and a local `compute` that runs the stages in tests/stages/."""
    from spaceport_dagster.resources.compute import LocalStageLauncher
    from spaceport_dagster.resources.storage import StorageResource

    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    compute = LocalStageLauncher(stages_package="tests.stages", env={"PYTHONPATH": pythonpath})
    return {"storage": StorageResource(root=str(home / "artifacts")), "compute": compute}


@pytest.fixture
def spaceport_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SPACEPORT_HOME (artifacts + Dagster instance) for one test."""
    home = dagster_home(tmp_path / "home")
    monkeypatch.setenv("SPACEPORT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("SPACEPORT_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("SPACEPORT_UPLOADS", raising=False)
    return home


@pytest.fixture
def instance(spaceport_home: Path) -> Iterator[object]:
    from dagster import DagsterInstance

    with DagsterInstance.get() as inst:
        yield inst


os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# Spinning OpenMP workers made in-process torch work 5-8x slower on a loaded 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def publish_files(store, dataset: str, asset: str, files: dict[str, bytes]) -> str:
    """Publish an artifact of `files` (relative path -> bytes) through `store`'s staging; its URI."""
    with store.staging(dataset, asset) as staging:
        for name, data in files.items():
            path = staging.local_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return store.publish(staging)


