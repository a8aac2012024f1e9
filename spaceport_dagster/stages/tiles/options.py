"""The train stage's config with an optional `tile` (a TileSpec as a dict), and the merge stage's config: the
train config that the tiles used (its gates and evaluation settings apply to the merged splat) plus `seam`."""

from __future__ import annotations

from typing import Any

from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.train.config import TrainConfig, load_config

from .spec import TileSpec

SEAM_RULES = ("trim", "keep")


def split_tile(config: dict[str, Any] | None) -> tuple[dict[str, Any], TileSpec | None]:
    """(the train options, the tile spec or None); ConfigError for a malformed spec."""
    config = dict(config or {})
    tile = config.pop("tile", None)
    if not tile:
        return config, None
    try:
        return config, TileSpec.from_dict(tile)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tile: {exc}") from None


def load_train_config(config: dict[str, Any]) -> TrainConfig:
    """The train stage's typed config; its tile spec (if any) is checked too (split_tile gives it)."""
    options, _ = split_tile(config)
    return load_config(options)


def split_seam(config: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    options = dict(config or {})
    seam = options.pop("seam", "trim")
    if seam not in SEAM_RULES:
        raise ConfigError(f"seam must be one of {', '.join(SEAM_RULES)}, not {seam!r}")
    return options, seam


def load_merge_config(config: dict[str, Any]) -> TrainConfig:
    """The merge stage's gates and evaluation settings: those of the train config the tiles used."""
    return load_config(split_seam(config)[0])
