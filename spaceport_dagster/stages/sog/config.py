"""The SOG stage's typed config and presets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from spaceport_dagster.stages.config import ConfigError, with_preset

from .encode import EncodeOptions
from .webp import WebpSettings


@dataclass
class SogConfig:
    bundle_name: str = "scene"  # the bundle is written as <bundle_name>.sog
    sh_bands: int = 3  # highest SH band kept (0-3), capped at the splat's own degree
    kmeans_iterations: int = 10
    kmeans_method: str = "auto"  # auto (flat on CUDA, two-level on big CPU runs) | flat | two_level
    seed: int = 0
    splats_per_palette_entry: int = 16  # SH palette ~ N/16 entries; 0 = splat-transform's rule (64k from 64k splats)
    device: str = "auto"  # k-means device: auto | cpu | cuda
    webp_method: int = 2  # libwebp effort 0..6
    webp_quality: int = 50  # lossless search effort 0..100
    # quality gates
    min_size_ratio: float = 10.0
    max_psnr_drop_db: float = 1.0
    # test-view renders for the PSNR drop: every test view at the export's size (the evaluation protocol)
    render_device: str = "auto"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", self.bundle_name):
            raise ValueError(f"bundle_name {self.bundle_name!r} must be a plain file name ([A-Za-z0-9._-])")
        if not 0 <= self.webp_method <= 6 or not 0 <= self.webp_quality <= 100:
            raise ValueError("webp_method must be 0..6 and webp_quality 0..100")
        if self.min_size_ratio <= 0 or self.max_psnr_drop_db < 0:
            raise ValueError("thresholds must be non-negative (min_size_ratio > 0)")
        self.encode_options()  # validates sh_bands, iterations

    def encode_options(self) -> EncodeOptions:
        return EncodeOptions(sh_bands=self.sh_bands, kmeans_iterations=self.kmeans_iterations,
                             kmeans_method=self.kmeans_method, seed=self.seed, device=self.device,
                             splats_per_palette_entry=self.splats_per_palette_entry)

    def webp_settings(self) -> WebpSettings:
        return WebpSettings(method=self.webp_method, quality=self.webp_quality, verify=True)


PRESETS: dict[str, dict[str, Any]] = {
    "standard": {},
    "preview": {},
}


def load_config(values: dict[str, Any] | None) -> SogConfig:
    values = dict(values or {})
    preset = values.pop("preset", "standard")
    try:
        return with_preset(SogConfig, PRESETS, preset, values)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
