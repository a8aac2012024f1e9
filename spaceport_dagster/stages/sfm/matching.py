"""Which image pairs to match, and running that matcher on the COLMAP database.

`auto`: every pair for small sets (cheap and the most robust); GPS neighbours when every image has a fix;
a sliding window for ordered captures (capture times, else file numbers, increasing with the name); the
vocabulary tree when a tree file is configured; every pair otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from .config import SfmConfig

_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def is_ordered_capture(manifest_images: list[dict[str, Any]]) -> bool:
    """Whether name order is capture order: timestamps, else the last number in the file name, increase."""
    records = sorted(manifest_images, key=lambda r: r["name"])
    if len(records) < 3:
        return False
    times = [r.get("captured_at") for r in records]
    if all(times):
        return all(a <= b for a, b in zip(times, times[1:], strict=False))
    numbers = [_NUMBER.search(Path(r["name"]).stem) for r in records]
    if all(numbers):
        values = [int(m.group(1)) for m in numbers if m]
        return all(a < b for a, b in zip(values, values[1:], strict=False))
    return False


def select_matcher(config: SfmConfig, manifest_images: list[dict[str, Any]]) -> tuple[str, str]:
    """(matcher, why) for this image set."""
    if config.matcher != "auto":
        return config.matcher, "configured"
    n = len(manifest_images)
    if n <= config.exhaustive_max_images:
        return "exhaustive", f"{n} images <= {config.exhaustive_max_images}: every pair"
    if all(r.get("gps") for r in manifest_images):
        return "spatial", f"all {n} images carry GPS"
    if is_ordered_capture(manifest_images):
        return "sequential", "names follow capture order"
    if config.vocab_tree_path:
        return "vocab_tree", "vocabulary tree configured"
    return "exhaustive", f"{n} unordered images without GPS and no vocabulary tree"


def write_position_priors(database_path: Path, positions: dict[str, np.ndarray],
                          covariance: np.ndarray | None = None) -> int:
    """Store local ENU positions (metres) as pose priors, which the spatial matcher reads.

    They replace the WGS84 priors COLMAP reads from EXIF itself, so matching uses the manifest's GPS facts
    (the same ones georegistration uses).
    """
    written = 0
    db = pycolmap.Database.open(database_path)
    try:
        db.clear_pose_priors()
        for image in db.read_all_images():
            if image.name not in positions:
                continue
            prior = pycolmap.PosePrior()
            prior.position = np.asarray(positions[image.name], float)
            prior.coordinate_system = pycolmap.PosePriorCoordinateSystem.CARTESIAN
            if covariance is not None:
                prior.position_covariance = covariance
            prior.corr_data_id = image.data_id
            db.write_pose_prior(prior)
            written += 1
    finally:
        db.close()
    return written


def matching_options(config: SfmConfig) -> pycolmap.FeatureMatchingOptions:
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = config.num_threads
    options.max_num_matches = config.max_num_matches
    options.guided_matching = config.guided_matching
    options.sift.max_ratio = config.max_ratio
    options.sift.max_distance = config.max_distance
    options.sift.cross_check = config.cross_check
    return options


def run_matcher(matcher: str, database_path: Path, config: SfmConfig) -> None:
    options = matching_options(config)
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = config.min_num_inliers
    verification.ransac.random_seed = config.random_seed
    common: dict[str, Any] = {"matching_options": options, "verification_options": verification,
                              "device": pycolmap.Device.cpu}
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(database_path, **common)
    elif matcher == "spatial":
        pairing = pycolmap.SpatialPairingOptions()
        pairing.max_num_neighbors = config.spatial_max_neighbors
        pairing.max_distance = config.spatial_max_distance_m
        pairing.ignore_z = True
        pycolmap.match_spatial(database_path, pairing_options=pairing, **common)
    elif matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = config.sequential_overlap
        if config.vocab_tree_path:
            pairing.loop_detection = True
            pairing.vocab_tree_path = str(Path(config.vocab_tree_path).expanduser())
        pycolmap.match_sequential(database_path, pairing_options=pairing, **common)
    elif matcher == "vocab_tree":
        pairing = pycolmap.VocabTreePairingOptions()
        pairing.vocab_tree_path = str(Path(config.vocab_tree_path).expanduser())
        pairing.num_images = config.vocab_tree_num_images
        pycolmap.match_vocabtree(database_path, pairing_options=pairing, **common)
    else:
        raise ValueError(f"unknown matcher {matcher!r}")
