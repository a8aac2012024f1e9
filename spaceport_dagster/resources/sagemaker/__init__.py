"""SageMaker compute: each stage as a Processing job (CPU) or Training job (GPU), under Dagster Pipes over S3."""

from .launcher import SageMakerStageLauncher
from .settings import DEFAULT_STAGE_SETTINGS, StageSettings

__all__ = ["DEFAULT_STAGE_SETTINGS", "SageMakerStageLauncher", "StageSettings"]
