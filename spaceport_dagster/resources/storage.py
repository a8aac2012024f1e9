"""The storage resource: artifacts under a local folder (default) or an S3 prefix, chosen by configuration."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource

from .artifact_store import ArtifactStore, open_store, retention_seconds


def spaceport_home() -> Path:
    return Path(os.environ.get("SPACEPORT_HOME", "./.spaceport")).expanduser().resolve()


def default_artifact_root() -> str:
    return os.environ.get("SPACEPORT_ARTIFACT_ROOT") or str(spaceport_home() / "artifacts")


class StorageResource(ConfigurableResource):
    """`root` is a folder or `s3://bucket/prefix`; `endpoint_url` points boto3 at an S3-compatible server;
    `retention_hours`: how long a superseded version stays readable (default $SPACEPORT_VERSION_RETENTION_HOURS,
    else 24)."""

    root: str
    endpoint_url: str | None = None
    retention_hours: float | None = None

    def store(self) -> ArtifactStore:
        return open_store(self.root, self.endpoint_url, retention_seconds(self.retention_hours))
