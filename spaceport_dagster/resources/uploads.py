"""Where a dataset's uploads live when a run does not name a source."""

from __future__ import annotations

import os

from spaceport_dagster.stages.dataset_id import validate_dataset_id

from .storage import spaceport_home


def uploads_root() -> str:
    """`SPACEPORT_UPLOADS` (a folder or s3://bucket/prefix/uploads), default `SPACEPORT_HOME/inbox`."""
    return os.environ.get("SPACEPORT_UPLOADS") or str(spaceport_home() / "inbox")


def default_source(dataset: str) -> str:
    return uploads_root().rstrip("/") + "/" + validate_dataset_id(dataset) + "/"
