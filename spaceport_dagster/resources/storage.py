"""The storage resource: artifacts under a local folder (default) or an S3 prefix, chosen by configuration."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from .artifact_store import ArtifactStore, open_store, retention_seconds


def spaceport_home() -> Path:
    return Path(os.environ.get("SPACEPORT_HOME", "./.spaceport")).expanduser().resolve()


def default_artifact_root() -> str:
    return os.environ.get("SPACEPORT_ARTIFACT_ROOT") or str(spaceport_home() / "artifacts")


class StorageResource(ConfigurableResource):
    """Where artifacts live. A field left empty is read from the environment when a run uses the resource, not
    when the definitions load, so a run follows the environment it runs in (SPACEPORT_HOME set by the CLI)."""

    root: str = Field(default="", description="a folder or s3://bucket/prefix; empty: SPACEPORT_ARTIFACT_ROOT, "
                                              "else SPACEPORT_HOME/artifacts")
    endpoint_url: str | None = Field(default=None, description="an S3-compatible server (e.g. a moto server); "
                                                               "empty: AWS_ENDPOINT_URL")
    retention_hours: float | None = Field(default=None, description="how long a superseded version stays readable; "
                                          "empty: SPACEPORT_VERSION_RETENTION_HOURS, else 24")

    def store(self) -> ArtifactStore:
        return open_store(self.root or default_artifact_root(),
                          self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
                          retention_seconds(self.retention_hours))
