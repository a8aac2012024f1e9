"""Run config shared by the stage assets: a named preset plus free-form overrides of the stage's options."""

from __future__ import annotations

from typing import Any

from dagster import AssetCheckSpec, Config
from pydantic import Field


class StageConfig(Config):
    preset: str = Field(default="", description="named preset of the stage's options; empty for the stage default")
    options: dict[str, Any] = Field(default_factory=dict, description="stage options overriding the preset")
    timeout_minutes: float = Field(default=0, description="kill the stage after this long; 0: the pipeline "
                                                          "preset's generous default")
    heartbeat_minutes: float = Field(default=0, description="kill the stage when it stops responding this long; "
                                                            "0: the default (30)")

    def stage_config(self) -> dict[str, Any]:
        return {**({"preset": self.preset} if self.preset else {}), **self.options}


def check_specs(asset: str, gates: dict[str, str], warnings: dict[str, str] | None = None) -> list[AssetCheckSpec]:
    """Blocking checks for `gates`, non-blocking ones for `warnings` (name -> description)."""
    specs = [AssetCheckSpec(name, asset=asset, description=text, blocking=True) for name, text in gates.items()]
    specs += [AssetCheckSpec(name, asset=asset, description=text) for name, text in (warnings or {}).items()]
    return specs
