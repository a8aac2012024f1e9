"""SfM stage options and presets.

`fast` (the dataclass defaults) was tuned on the 2-core dev machine (benchmarks/RESULTS.md): SIFT on images
capped at 1024 px with the up-sampled first octave (small images such as lund's 1024 px need it to find
enough features), 4096 features, every pair only up to 20 images (GPS neighbours above that), points seen by
two images kept, and an EXIF focal length that is a starting value, not a trusted prior. `quality` carries
the values the old pipeline tuned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from spaceport_dagster.stages.config import ConfigError, check_choices, with_preset

Matcher = Literal["auto", "exhaustive", "spatial", "sequential", "vocab_tree"]


@dataclass
class SfmConfig:
    engine: Literal["colmap", "opensfm"] = "colmap"
    opensfm_options: dict[str, Any] = field(default_factory=dict)  # OpenSfmOptions fields, engine "opensfm" only
    # features
    max_image_size: int = 1024
    max_num_features: int = 4096
    first_octave: int = -1
    num_octaves: int = 4
    octave_resolution: int = 3
    peak_threshold: float = 0.0066667
    camera_model: str = "SIMPLE_RADIAL"
    # EXIF focal length: always the starting value; trusted (COLMAP "prior focal length") only on request,
    # because EXIF can be far off: lund's 35 mm equivalent gives 996 px, the solved focal is ~766 px, and a
    # trusted prior leaves COLMAP with 2 of 29 images registered.
    trust_exif_focal: bool = False
    # matching
    matcher: Matcher = "auto"
    exhaustive_max_images: int = 20  # auto: up to this many images, match every pair
    spatial_max_neighbors: int = 10
    spatial_max_distance_m: float = 200.0
    sequential_overlap: int = 10
    # a COLMAP faiss vocabulary tree file (checked before any work); auto uses it for unordered surveys
    # without GPS above exhaustive_max_images, and sequential matching for loop detection
    vocab_tree_path: str = ""
    # images retrieved per image, so pairs grow linearly with the survey. COLMAP's 100 is sized for internet
    # collections; 30 is 3x the 10 GPS neighbours that register the synthetic surveys (not measured with a tree)
    vocab_tree_num_images: int = 30
    max_ratio: float = 0.8
    max_distance: float = 0.7
    cross_check: bool = True
    guided_matching: bool = False
    max_num_matches: int = 32768
    min_num_inliers: int = 15
    # mapping
    mapper: Literal["incremental", "global"] = "incremental"
    global_fallback: bool = True  # incremental left images out: also run the global mapper, keep the larger
    abs_pose_min_num_inliers: int = 15  # COLMAP: 30; lund's last image (turning on the spot) needs 15
    ignore_two_view_tracks: bool = False  # COLMAP: True; False also keeps points seen by exactly two images
    ba_global_max_num_iterations: int = -1  # -1: COLMAP default
    ba_local_max_num_iterations: int = -1
    ba_global_frames_ratio: float = 1.1
    ba_global_points_ratio: float = 1.1
    # GPS as position priors inside bundle adjustment (COLMAP use_prior_position), with a vertical standard
    # deviation large enough that drifting camera altitudes do not pull; off: it measured no better (RESULTS)
    ba_gps_priors: bool = False
    gps_prior_horizontal_std_m: float = 5.0
    gps_prior_vertical_std_m: float = 1000.0
    random_seed: int = 0
    num_threads: int = -1
    keep_database: bool = False  # copy the COLMAP database.db into the artifact
    # georegistration
    georegister: bool = True
    georegister_min_images: int = 3
    # a fix is an outlier only beyond this distance and beyond 3.7 sigma of the GPS noise the fit measures
    georegister_max_error_m: float = 10.0
    # georegister when the GPS fixes scale and heading within this (1 sigma, relative; heading in radians, so
    # 0.2 is 11.5 deg), else an upright local frame in model units; warn above georegister_warn_uncertainty
    georegister_max_uncertainty: float = 0.2
    georegister_warn_uncertainty: float = 0.05
    # GPS altitude is used (a full 3D fit) only when that fit leaves the cameras' own up within this angle of
    # vertical and the altitudes agree with the model's heights within max(this many metres, 3x the
    # horizontal residual); otherwise up comes from the cameras (camera GPS altitude drifts, issue 13)
    georegister_max_altitude_tilt_deg: float = 2.0
    georegister_min_vertical_tolerance_m: float = 3.0
    gps_link_m: float = 1000.0  # fixes farther than this from every other agreeing fix are outliers (gps_outliers)
    # quality gates
    min_points: int = 1000
    min_registered_fraction: float = 0.5
    max_reprojection_error_px: float = 1.5
    max_upright_deg: float = 5.0  # `upright`: nadir views and camera plane within this of the frame's vertical

    def __post_init__(self) -> None:
        check_choices(self)  # engine, matcher, mapper
        if self.vocab_tree_num_images < 1:
            raise ValueError(f"vocab_tree_num_images must be at least 1, not {self.vocab_tree_num_images}")
        if self.matcher == "vocab_tree" and not self.vocab_tree_path:
            raise ValueError("matcher 'vocab_tree' needs vocab_tree_path (a COLMAP vocabulary tree file)")
        if not 0.0 < self.georegister_warn_uncertainty <= self.georegister_max_uncertainty:
            raise ValueError("need 0 < georegister_warn_uncertainty <= georegister_max_uncertainty, not "
                             f"{self.georegister_warn_uncertainty} and {self.georegister_max_uncertainty}")
        if not 0.0 <= self.min_registered_fraction <= 1.0:
            raise ValueError("min_registered_fraction must be within [0, 1]")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},
    "quality": {
        "max_image_size": 4096,
        "max_num_features": 16384,
        "first_octave": -1,
        "num_octaves": 4,
        "octave_resolution": 3,
        "max_ratio": 0.8,
        "max_distance": 0.7,
        "cross_check": True,
        "guided_matching": True,
        "max_num_matches": 32768,
    },
}


def load_config(values: dict[str, Any] | None) -> SfmConfig:
    """Config from a plain dict: optional key `preset` (default `fast`), other keys override it."""
    values = dict(values or {})
    preset = values.pop("preset", "fast")
    if not isinstance(preset, str):
        raise ConfigError(f"preset must be a name, not {preset!r}")
    return with_preset(SfmConfig, PRESETS, preset, values)
