"""Resources chosen by environment: local folder and local subprocesses unless configured otherwise."""

from __future__ import annotations

import os
from typing import Any

from .compute import LocalStageLauncher, StageLauncher
from .storage import StorageResource


def compute_from_env() -> StageLauncher:
    kind = os.environ.get("SPACEPORT_COMPUTE", "local")
    if kind == "local":
        return LocalStageLauncher()
    if kind == "sagemaker":
        from .sagemaker.env import launcher_from_env

        return launcher_from_env()
    raise ValueError(f"SPACEPORT_COMPUTE={kind!r} is not a known launcher; use 'local' or 'sagemaker'")


def resources_from_env() -> dict[str, Any]:
    return {
        "storage": StorageResource(),  # root and endpoint are read when a run uses it
        "compute": compute_from_env(),
    }
