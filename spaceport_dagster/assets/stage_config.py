"""Run config shared by the stage assets: a named preset (a choice in the launchpad) plus free-form overrides
of the stage's options."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from typing import Any
from warnings import catch_warnings, filterwarnings

from dagster import AssetCheckSpec, AssetsDefinition, Config, PreviewWarning, asset
from pydantic import Field

from spaceport_dagster.partitions import datasets_partitions

from .stage_asset import reports_rejections

# The stages' own preset names (their PRESETS dicts; tests/test_stage_config.py keeps the two in step). Listed
# here so that loading the definitions never imports a stage's heavy dependencies.


class SfmPreset(Enum):
    fast = "fast"
    quality = "quality"


class TrainPreset(Enum):
    preview = "preview"
    standard = "standard"
    quality = "quality"
    reference = "reference"


class SogPreset(Enum):
    preview = "preview"
    standard = "standard"


# Under every asset's description in the UI: what the page's latest materialisation means.
LIVE_VERSION_NOTE = ("The latest materialization is the live version (its `artifact version`, what readers and "
                     "`spaceport view` get). An output that fails a blocking check is never materialized: its run "
                     "fails, its figures are an observation marked `spaceport/rejected`, and the live version stays.")

PRESET_HELP = "named preset of the stage's options; none for the stage default"


class StageConfig(Config):
    options: dict[str, Any] = Field(default_factory=dict, description="stage options overriding the preset")
    timeout_minutes: float = Field(default=0, description="kill the stage after this long; 0: the pipeline "
                                                          "preset's generous default")
    heartbeat_minutes: float = Field(default=0, description="kill the stage when it stops responding this long; "
                                                            "0: the default (30)")

    def stage_config(self) -> dict[str, Any]:
        preset = getattr(self, "preset", None)
        name = preset.value if isinstance(preset, Enum) else preset
        return {**({"preset": name} if name else {}), **self.options}


class SfmConfig(StageConfig):
    preset: SfmPreset | None = Field(default=None, description=PRESET_HELP)


class TrainConfig(StageConfig):
    preset: TrainPreset | None = Field(default=None, description=PRESET_HELP)
    tiles: int = Field(default=0, ge=0, le=64, description="0: automatic (tiles only when the survey exceeds one "
                       "GPU's budget, or spreads over several GPUs; README 'Large surveys'); 1: one training; K: "
                       "K spatial tiles trained as separate jobs and merged")
    tile_budget_megapixels: float = Field(default=600.0, gt=0, description="automatic tiling: the most training "
                                          "pixels (photos at the training resolution) one tile takes")
    tile_parallel: int = Field(default=0, ge=0, description="tiles trained at once; 0: one per GPU here (one after "
                               "the other without), all at once on SageMaker")


class SogConfig(StageConfig):
    preset: SogPreset | None = Field(default=None, description=PRESET_HELP)


def check_specs(asset: str, gates: dict[str, str], warnings: dict[str, str] | None = None) -> list[AssetCheckSpec]:
    """Blocking checks for `gates`, non-blocking ones for `warnings` (name -> description); partitioned by
    dataset like their asset, so each result names its dataset in the UI."""
    with catch_warnings():  # partitioned checks are "preview" in Dagster 1.13: said once per check on every load
        filterwarnings("ignore", category=PreviewWarning)
        specs = [AssetCheckSpec(name, asset=asset, description=text, blocking=True,
                                partitions_def=datasets_partitions) for name, text in gates.items()]
        specs += [AssetCheckSpec(name, asset=asset, description=text, partitions_def=datasets_partitions)
                  for name, text in (warnings or {}).items()]
    return specs


def pipeline_asset(*, gates: dict[str, str], warnings: dict[str, str] | None = None,
                   **asset_args: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """`@asset` for a stage of the pipeline: named after the function, partitioned by dataset, with blocking
    checks for `gates` and non-blocking ones for `warnings` (check_specs); `asset_args` go to `@asset`. An output that
fails a gate is a failed step, not a materialisation (stage_asset.reports_rejections)."""
    def decorate(fn: Callable[..., Any]) -> AssetsDefinition:
        description = inspect.cleandoc(fn.__doc__ or "") + "\n\n" + LIVE_VERSION_NOTE
        return asset(name=fn.__name__, partitions_def=datasets_partitions, description=description,
                     check_specs=check_specs(fn.__name__, gates, warnings), **asset_args)(reports_rejections(fn))
    return decorate
