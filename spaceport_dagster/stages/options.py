"""A stage's options checked the way the stage itself will read them, before any job is started.

On SageMaker a typo in an option would otherwise surface only after the instance started and the image was
pulled (minutes, billed); the launcher calls `validate_options` first. Each stage's own loader is used, so the
check cannot drift from what the stage accepts.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ConfigError, from_dict

# stage -> (module, loader): a `load_config(dict)` function, or a dataclass read strictly by `from_dict`.
LOADERS: dict[str, tuple[str, str]] = {
    "ingest": ("spaceport_dagster.stages.ingest.stage", "IngestConfig"),
    "sfm": ("spaceport_dagster.stages.sfm.config", "load_config"),
    "export": ("spaceport_dagster.stages.export.stage", "ExportConfig"),
    "train": ("spaceport_dagster.stages.train.stage", "load_stage_config"),  # a tile spec is optional
    "merge": ("spaceport_dagster.stages.merge.stage", "load_stage_config"),
    "sog": ("spaceport_dagster.stages.sog.config", "load_config"),
}


def validate_options(stage: str, config: dict[str, Any] | None) -> Any:
    """The stage's typed config for `config`; ConfigError naming the stage when the stage would refuse it."""
    if stage not in LOADERS:
        raise ConfigError(f"no option loader for stage {stage!r}; known: {', '.join(sorted(LOADERS))}")
    module_name, attr = LOADERS[stage]
    loader = getattr(importlib.import_module(module_name), attr)
    try:
        if isinstance(loader, type):  # a config dataclass
            return from_dict(loader, config)
        return loader(dict(config or {}))
    except ConfigError as exc:
        raise ConfigError(f"stage {stage}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"stage {stage}: {exc}") from exc
