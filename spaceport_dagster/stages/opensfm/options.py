"""Our OpenSfM options and the OpenSfM config.yaml written from them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaceport_dagster.stages.config import from_dict

from .convert import DEFAULT_MAX_REPROJECTION_ERROR_PX, DEFAULT_MIN_TRACK_LENGTH

STEPS = ("extract_metadata", "detect_features", "match_features", "create_tracks", "reconstruct")


@dataclass
class OpenSfmOptions:
    use_gps: bool = True  # GPS in bundle adjustment and for choosing pairs to match
    use_altitude_tag: bool = True  # use EXIF GPS altitude (drones record it; phones often do not)
    feature_min_frames: int = 4000  # features per image OpenSfM aims for
    feature_process_size: int = 2048  # long side images are resized to for feature detection
    processes: int = 0  # 0: one per CPU core
    matching_gps_neighbors: int = 0  # 0: no limit (all pairs within matching_gps_distance)
    max_reprojection_error_px: float = DEFAULT_MAX_REPROJECTION_ERROR_PX  # converter's residual filter
    min_track_length: int = DEFAULT_MIN_TRACK_LENGTH
    step_timeout_s: float | None = None  # per OpenSfM command; None: no limit
    config_overrides: dict[str, Any] = field(default_factory=dict)  # raw OpenSfM config keys, applied last

    def __post_init__(self) -> None:
        if self.feature_min_frames < 100:
            raise ValueError("feature_min_frames must be at least 100")
        if self.processes < 0:
            raise ValueError("processes must be 0 (all cores) or more")
        if self.max_reprojection_error_px <= 0:
            raise ValueError("max_reprojection_error_px must be positive")
        bad = [k for k, v in self.config_overrides.items() if not isinstance(v, str | int | float | bool)]
        if bad:
            raise ValueError(f"config_overrides must map to scalars; not: {', '.join(bad)}")


# Keys of the SfM stage's own config that have an OpenSfM counterpart (accepted by `options_from`).
SFM_STAGE_KEYS = {"max_image_size": "feature_process_size", "max_num_features": "feature_min_frames"}


def options_from(values: OpenSfmOptions | Mapping[str, Any] | None) -> OpenSfmOptions:
    """OpenSfmOptions as given, or built (strictly) from a plain mapping; the SfM stage's `max_image_size` and
    `max_num_features` are accepted as `feature_process_size` and `feature_min_frames`."""
    if isinstance(values, OpenSfmOptions):
        return values
    renamed = {SFM_STAGE_KEYS.get(k, k): v for k, v in dict(values or {}).items()}
    return from_dict(OpenSfmOptions, renamed)


def opensfm_config(options: OpenSfmOptions) -> dict[str, Any]:
    """OpenSfM config keys (opensfm/config.py) for `options`."""
    config: dict[str, Any] = {
        # Downscaled uploads keep the original size in EXIF; OpenSfM must use the decoded size.
        "use_exif_size": False,
        "use_altitude_tag": options.use_altitude_tag,
        "bundle_use_gps": options.use_gps,
        "feature_min_frames": options.feature_min_frames,
        "feature_process_size": options.feature_process_size,
        "processes": options.processes or os.cpu_count() or 1,
        "matching_gps_neighbors": options.matching_gps_neighbors,
    }
    if not options.use_gps:
        config["matching_gps_distance"] = 0  # 0: do not restrict pairs by GPS distance
    config.update(options.config_overrides)
    return config


def write_config(options: OpenSfmOptions, path: Path) -> dict[str, Any]:
    """Write config.yaml (JSON scalars are valid YAML) and return what was written."""
    config = opensfm_config(options)
    lines = ["# written by spaceport_dagster.stages.opensfm from the stage options"]
    lines += [f"{key}: {json.dumps(value)}" for key, value in config.items()]
    path.write_text("\n".join(lines) + "\n")
    return config
