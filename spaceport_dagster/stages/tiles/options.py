"""The options tiling adds to a stage config: `tile` (a TileSpec as a dict) to the train stage's, `seam` to the
merge stage's (whose other options are the train config the tiles used)."""

from __future__ import annotations

from typing import Any

from spaceport_dagster.stages.config import ConfigError

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


def split_seam(config: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    options = dict(config or {})
    seam = options.pop("seam", "trim")
    if seam not in SEAM_RULES:
        raise ConfigError(f"seam must be one of {', '.join(SEAM_RULES)}, not {seam!r}")
    return options, seam
