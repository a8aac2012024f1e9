"""SageMaker launcher settings from the environment (SPACEPORT_COMPUTE=sagemaker).

Required: SPACEPORT_SAGEMAKER_ROLE_ARN, and SPACEPORT_SAGEMAKER_IMAGE_REPO unless every stage has an image.
Optional: SPACEPORT_SAGEMAKER_REGION (else AWS_REGION / AWS_DEFAULT_REGION), SPACEPORT_SAGEMAKER_IMAGE_TAG,
SPACEPORT_SAGEMAKER_STAGES (JSON: {"train": {"spot": false}}), per-stage variables
SPACEPORT_SAGEMAKER_<STAGE>_{IMAGE_URI,INSTANCE_TYPE,VOLUME_GB,MAX_RUNTIME_S,SPOT,MAX_WAIT_S,INSTANCE_COUNT},
SPACEPORT_SAGEMAKER_PRICES (JSON: {"ml.g5.xlarge": 1.5}), SPACEPORT_SAGEMAKER_KEEP_JOB_FILES, and the timings
SPACEPORT_SAGEMAKER_{POLL_S (5), MAX_POLL_S (60), PIPES_INTERVAL_S (10), STOP_TIMEOUT_S (600)}.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .launcher import SageMakerStageLauncher
from .settings import DEFAULT_STAGE_SETTINGS

PREFIX = "SPACEPORT_SAGEMAKER_"
_FIELDS: dict[str, Any] = {"IMAGE_URI": str, "INSTANCE_TYPE": str, "VOLUME_GB": int, "MAX_RUNTIME_S": int,
                           "MAX_WAIT_S": int, "INSTANCE_COUNT": int, "SPOT": "bool"}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _json(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(PREFIX + name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{PREFIX}{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{PREFIX}{name} must be a JSON object")
    return value


def stage_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    overrides = {stage: dict(values) for stage, values in _json(env, "STAGES").items()}
    for stage in DEFAULT_STAGE_SETTINGS:
        for field, kind in _FIELDS.items():
            raw = env.get(f"{PREFIX}{stage.upper()}_{field}")
            if raw:
                value = _bool(raw) if kind == "bool" else kind(raw)
                overrides.setdefault(stage, {})[field.lower()] = value
    return overrides


def launcher_from_env(env: Mapping[str, str] | None = None) -> SageMakerStageLauncher:
    env = os.environ if env is None else env
    role = env.get(PREFIX + "ROLE_ARN", "")
    if not role:
        raise ValueError(f"SPACEPORT_COMPUTE=sagemaker needs {PREFIX}ROLE_ARN (the SageMaker execution role)")
    launcher = SageMakerStageLauncher(
        role_arn=role,
        region=env.get(PREFIX + "REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "",
        image_repo=env.get(PREFIX + "IMAGE_REPO", ""),
        image_tag=env.get(PREFIX + "IMAGE_TAG", "latest"),
        stages=stage_overrides(env),
        prices={k: float(v) for k, v in _json(env, "PRICES").items()},
        poll_interval_s=float(env.get(PREFIX + "POLL_S", "5")),
        max_poll_interval_s=float(env.get(PREFIX + "MAX_POLL_S", "60")),
        pipes_interval_s=float(env.get(PREFIX + "PIPES_INTERVAL_S", "10")),
        stop_timeout_s=float(env.get(PREFIX + "STOP_TIMEOUT_S", "600")),
        keep_job_files=_bool(env.get(PREFIX + "KEEP_JOB_FILES", "false")),
    )
    for stage in DEFAULT_STAGE_SETTINGS:  # fail at load time, not in the middle of a run
        launcher.settings_for(stage)
    return launcher
