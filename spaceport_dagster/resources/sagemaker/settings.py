"""Per-stage SageMaker settings: instance type, disk, time limits, image, spot. Defaults from the seed deployment."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from spaceport_dagster.stages.config import check_choices

# Which image runs which stage: SfM and export share the pycolmap image.
STAGE_IMAGES = {"ingest": "ingest", "sfm": "sfm", "export": "sfm", "train": "train", "merge": "train", "sog": "sog"}


@dataclass(frozen=True)
class StageSettings:
    instance_type: str
    volume_gb: int
    max_runtime_s: int
    job_kind: Literal["processing", "training"] = "processing"  # processing: CPU stages; training: the GPU stage
    image_uri: str = ""  # empty: `<image_repo>-<image>:<image_tag>` from the launcher
    instance_count: int = 1
    spot: bool = False  # managed spot training (training jobs only)
    max_wait_s: int = 0  # spot: runtime plus time waiting for capacity; 0 = twice max_runtime_s

    def __post_init__(self) -> None:
        check_choices(self)  # job_kind
        if self.spot and self.job_kind != "training":
            raise ValueError("managed spot capacity exists only for training jobs")
        if not 1 <= self.max_runtime_s <= 432_000:
            raise ValueError(f"max_runtime_s must be within 1..432000 (5 days), got {self.max_runtime_s}")

    @property
    def max_wait(self) -> int:
        return max(self.max_wait_s or 2 * self.max_runtime_s, self.max_runtime_s)


DEFAULT_STAGE_SETTINGS: dict[str, StageSettings] = {
    "ingest": StageSettings("ml.c6i.xlarge", 30, 3600),
    "sfm": StageSettings("ml.c6i.2xlarge", 100, 6 * 3600),
    "export": StageSettings("ml.c6i.2xlarge", 100, 2 * 3600),
    # A10G (sm_86); the T4 of ml.g4dn lacked a CUDA feature the trainer needed.
    "train": StageSettings("ml.g5.xlarge", 100, 8 * 3600, job_kind="training", spot=True),
    # joins the tiles of a tiled training and scores the merged splat on the test views (renders: a GPU)
    "merge": StageSettings("ml.g5.xlarge", 100, 2 * 3600, job_kind="training"),
    "sog": StageSettings("ml.c6i.4xlarge", 50, 2 * 3600),
}


def stage_settings(stage: str, overrides: dict[str, dict[str, Any]] | None = None) -> StageSettings:
    """The defaults of `stage` with `overrides[stage]` applied (unknown keys are refused, not ignored)."""
    if stage not in DEFAULT_STAGE_SETTINGS:
        raise ValueError(f"no SageMaker settings for stage {stage!r}; known: {sorted(DEFAULT_STAGE_SETTINGS)}")
    changes = dict((overrides or {}).get(stage, {}))
    known = {f.name for f in dataclasses.fields(StageSettings)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown SageMaker setting(s) {unknown} for stage {stage!r}; known: {sorted(known)}")
    return dataclasses.replace(DEFAULT_STAGE_SETTINGS[stage], **changes)
