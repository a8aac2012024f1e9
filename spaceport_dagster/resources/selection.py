"""The resources of the definitions: local folder and local subprocesses unless the environment says otherwise.

Nothing is read from the environment when the definitions load: each resource reads its settings when a run
uses it, so a run follows the environment it runs in (the CLI sets SPACEPORT_HOME before it runs).

Why the fields are not set with `EnvVar` here: Dagster resolves an `EnvVar` when a run initialises the resource
and fails the run when the variable is unset, in an Optional field too (dagster/_config/source.py; `EnvVar` has
no default, dagster-io/dagster#16232). Every setting here is optional, and the SageMaker and SES ones are
required only once SPACEPORT_COMPUTE / SPACEPORT_NOTIFY choose that backend, so an `EnvVar` would fail every
local run. Each field defaults to empty, and its description (shown in the UI) names the variable read instead.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import AssetExecutionContext
from pydantic import Field

from .artifact_store import ArtifactStore, Staging
from .compute import LocalStageLauncher, PipesResult, StageLauncher, StageRequest
from .storage import StorageResource


def compute_from_env(kind: str | None = None) -> StageLauncher:
    """The launcher `kind` names, else SPACEPORT_COMPUTE: 'local' (the default) or 'sagemaker'
    (configured from SPACEPORT_SAGEMAKER_*, see sagemaker/env.py)."""
    kind = kind or os.environ.get("SPACEPORT_COMPUTE", "local")
    if kind == "local":
        return LocalStageLauncher()
    if kind == "sagemaker":
        from .sagemaker.env import launcher_from_env

        return launcher_from_env()
    raise ValueError(f"SPACEPORT_COMPUTE={kind!r} is not a known launcher; use 'local' or 'sagemaker'")


class EnvironmentStageLauncher(StageLauncher):
    """The compute resource of the definitions: the launcher that `kind` (else SPACEPORT_COMPUTE) names, chosen
    when a stage launches."""

    kind: str = Field(default="", description="'local' or 'sagemaker'; empty: SPACEPORT_COMPUTE, else local. "
                                              "sagemaker reads SPACEPORT_SAGEMAKER_ROLE_ARN (required), "
                                              "SPACEPORT_SAGEMAKER_IMAGE_REPO and the other SPACEPORT_SAGEMAKER_* "
                                              "(resources/sagemaker/env.py)")

    def launcher(self) -> StageLauncher:
        return compute_from_env(self.kind or None)

    def launch(self, context: AssetExecutionContext, store: ArtifactStore, request: StageRequest,
               staging: Staging) -> list[PipesResult]:
        return self.launcher().launch(context, store, request, staging)


def resources_from_env() -> dict[str, Any]:
    """`storage` and `compute`, each reading the environment when a run uses it."""
    return {"storage": StorageResource(), "compute": EnvironmentStageLauncher()}
