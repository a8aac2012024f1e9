"""COLMAP engine: SIFT features, matching and mapping on a fresh database; every step timed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from .camera_groups import camera_params, group_cameras
from .config import SfmConfig
from .matching import run_matcher, select_matcher, write_position_priors
from .vocab_tree import check_vocab_tree


@dataclass
class EngineResult:
    models: list[pycolmap.Reconstruction]
    seconds: dict[str, float]  # wall clock per step
    matcher: str
    matcher_reason: str
    cameras: int
    extra: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # process CPU per step (all threads)


class StepTimer:
    """Wall and process-CPU seconds per named step; CPU time stays meaningful on a shared, loaded machine."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def step(self, name: str) -> _Step:
        return _Step(self, name)


class _Step:
    def __init__(self, timer: StepTimer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.timer.wall[self.name] = time.perf_counter() - self.wall0
        self.timer.cpu[self.name] = time.process_time() - self.cpu0


# Above this long side SIFT starts at the image's own resolution: the up-sampled first octave (which small
# images such as lund's 1024 px need) would make a 4096 px image an 8192 px pyramid, about 2 GB per thread.
MAX_UPSAMPLED_SIDE = 2048


def sift_long_side(config: SfmConfig, width: int, height: int) -> int:
    """The long side SIFT works on: the photo's, capped at max_image_size (the photo itself is never changed)."""
    long_side = max(width, height)
    return min(long_side, config.max_image_size) if config.max_image_size > 0 and long_side else long_side


def extraction_options(config: SfmConfig, long_side: int = 0) -> pycolmap.FeatureExtractionOptions:
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = config.max_image_size
    options.num_threads = config.num_threads
    options.sift.max_num_features = config.max_num_features
    options.sift.first_octave = (max(config.first_octave, 0) if long_side > MAX_UPSAMPLED_SIDE
                                 else config.first_octave)
    options.sift.num_octaves = config.num_octaves
    options.sift.octave_resolution = config.octave_resolution
    options.sift.peak_threshold = config.peak_threshold
    return options


EXTRACTION_BATCH = 25  # images per extraction call: a progress line (count, seconds) after each


def extract(database: Path, image_dir: Path, manifest_images: list[dict[str, Any]], config: SfmConfig,
            log: logging.Logger) -> int:
    """Features for every image; one COLMAP camera per EXIF camera group, focal prior from EXIF."""
    groups = group_cameras(manifest_images)
    cameras, done, total, start = 0, 0, len(manifest_images), time.perf_counter()
    for group in groups:
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        reader.camera_params = camera_params(config.camera_model, group)
        mode = pycolmap.CameraMode.SINGLE if group.shared else pycolmap.CameraMode.PER_IMAGE
        cameras += 1 if group.shared else len(group.images)
        prior = f"{group.focal_prior_px:.1f} px" if group.focal_prior_px else "none (COLMAP default)"
        log.info(f"camera {group.camera!r} {group.width}x{group.height}: {len(group.images)} images, "
                 f"{'shared' if group.shared else 'per-image'} intrinsics, focal prior {prior}")
        # shared intrinsics: the first batch creates the camera; the later ones reuse it through camera_id
        for first in range(0, len(group.images), EXTRACTION_BATCH):
            batch = group.images[first:first + EXTRACTION_BATCH]
            if group.shared and first:
                reader.existing_camera_id = _camera_of(database, group.images[0])
            pycolmap.extract_features(database, image_dir, image_names=batch, camera_mode=mode,
                                      reader_options=reader,
                                      extraction_options=extraction_options(
                                          config, sift_long_side(config, group.width, group.height)),
                                      device=pycolmap.Device.cpu)
            done += len(batch)
            log.info(f"features: {done}/{total} images ({time.perf_counter() - start:.0f} s)")
    if not config.trust_exif_focal:
        untrust_focal_priors(database)
    return cameras


def _camera_of(database: Path, image_name: str) -> int:
    db = pycolmap.Database.open(database)
    try:
        return db.read_image_with_name(image_name).camera_id
    finally:
        db.close()


def database_counts(database: Path) -> dict[str, int]:
    db = pycolmap.Database.open(database)
    try:
        return {"images": db.num_images(), "keypoints": db.num_keypoints(),
                "matched_pairs": db.num_matched_image_pairs(), "verified_pairs": db.num_verified_image_pairs(),
                "inlier_matches": db.num_inlier_matches()}
    finally:
        db.close()


def untrust_focal_priors(database: Path) -> None:
    """Keep the EXIF focal as the initial value but let COLMAP treat it as unknown (see SfmConfig)."""
    db = pycolmap.Database.open(database)
    try:
        for camera in db.read_all_cameras():
            if camera.has_prior_focal_length:
                camera.has_prior_focal_length = False
                db.update_camera(camera)
    finally:
        db.close()


def incremental_options(config: SfmConfig) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = config.num_threads
    options.random_seed = config.random_seed
    options.ba_global_frames_ratio = config.ba_global_frames_ratio
    options.ba_global_points_ratio = config.ba_global_points_ratio
    options.ba_global_max_num_iterations = config.ba_global_max_num_iterations
    options.ba_local_max_num_iterations = config.ba_local_max_num_iterations
    options.min_num_matches = config.min_num_inliers
    options.mapper.abs_pose_min_num_inliers = config.abs_pose_min_num_inliers
    options.triangulation.ignore_two_view_tracks = config.ignore_two_view_tracks
    if config.ba_gps_priors:
        options.use_prior_position = True
        options.use_robust_loss_on_prior_position = True
    return options


def global_options(config: SfmConfig) -> pycolmap.GlobalPipelineOptions:
    options = pycolmap.GlobalPipelineOptions()
    options.num_threads = config.num_threads
    options.random_seed = config.random_seed
    options.min_num_matches = config.min_num_inliers
    return options


class MappingProgress:
    """Called by the incremental mapper when it registers its initial pair and each image after: a log line
    every `every` registrations and at the last image."""

    def __init__(self, log: logging.Logger, total: int, every: int = 10) -> None:
        self.log, self.total, self.every, self.count, self.start = log, total, every, 0, time.perf_counter()

    def initial_pair(self) -> None:
        self.count += 2
        self.log.info(f"mapping: initial pair registered ({time.perf_counter() - self.start:.0f} s)")

    def __call__(self) -> None:
        self.count += 1
        if self.count % self.every == 0 or self.count == self.total:
            self.log.info(f"mapping: {self.count} image registrations of {self.total} images "
                          f"({time.perf_counter() - self.start:.0f} s)")


def run_mapper(mapper: str, database: Path, image_dir: Path, work_dir: Path,
               config: SfmConfig, log: logging.Logger | None = None, n_images: int = 0) -> list[pycolmap.Reconstruction]:
    out = work_dir / f"models-{mapper}"
    out.mkdir(parents=True, exist_ok=True)
    if mapper == "global":
        models = pycolmap.global_mapping(database, image_dir, out, global_options(config))
    else:
        progress = MappingProgress(log, n_images) if log else None
        models = pycolmap.incremental_mapping(database, image_dir, out, incremental_options(config),
                                              initial_image_pair_callback=progress.initial_pair if progress else None,
                                              next_image_callback=progress)
    return list(models.values())


def _size(model: pycolmap.Reconstruction) -> tuple[int, int]:
    return model.num_reg_images(), model.num_points3D()


def map_models(database: Path, image_dir: Path, work_dir: Path, config: SfmConfig, n_images: int,
               log: logging.Logger) -> tuple[list[pycolmap.Reconstruction], str]:
    """All models, largest first, and the mapper that made the largest.

    With `global_fallback`, an incremental run that leaves images out is followed by the global mapper on the
    same matches (mapping is seconds next to features and matching): on forward-moving sequences COLMAP's
    incremental initialisation can lock onto a poor pair (10 lund images: 2/10 incremental, 10/10 global).
    """
    models = [(m, config.mapper) for m in run_mapper(config.mapper, database, image_dir, work_dir, config, log,
                                                      n_images)]
    best = max((_size(m) for m, _ in models), default=(0, 0))
    if config.mapper == "incremental" and config.global_fallback and best[0] < n_images:
        log.info(f"incremental mapping registered {best[0]}/{n_images}; trying the global mapper as well")
        models += [(m, "global") for m in run_mapper("global", database, image_dir, work_dir, config)]
    models.sort(key=lambda item: _size(item[0]), reverse=True)
    return [m for m, _ in models], (models[0][1] if models else config.mapper)


def reconstruct(image_dir: Path, work_dir: Path, manifest_images: list[dict[str, Any]], config: SfmConfig,
                gps_enu: dict[str, np.ndarray], log: logging.Logger) -> EngineResult:
    """Run features, matching and mapping; `gps_enu` (image name -> ENU metres) feeds the spatial matcher."""
    if config.vocab_tree_path:  # fail before the features, not when COLMAP aborts on it while matching
        check_vocab_tree(config.vocab_tree_path)
    database = work_dir / "database.db"
    database.unlink(missing_ok=True)
    pycolmap.set_random_seed(config.random_seed)
    timer = StepTimer()
    with timer.step("features"):
        cameras = extract(database, image_dir, manifest_images, config, log)
    counts = database_counts(database)
    log.info(f"features done: {counts['images']} images, {counts['keypoints'] / max(counts['images'], 1):.0f} "
             f"keypoints per image ({timer.wall['features']:.0f} s)")

    matcher, why = select_matcher(config, manifest_images)
    if matcher == "spatial" and len(gps_enu) < 2:
        matcher, why = "exhaustive", "spatial matching needs GPS; fell back to every pair"
    log.info(f"matching: {matcher} ({why})")
    with timer.step("matching"):
        if matcher == "spatial" or (config.ba_gps_priors and gps_enu):
            h, v = config.gps_prior_horizontal_std_m ** 2, config.gps_prior_vertical_std_m ** 2
            write_position_priors(database, gps_enu, np.diag([h, h, v]) if config.ba_gps_priors else None)
        run_matcher(matcher, database, config)
    counts = database_counts(database)
    log.info(f"matching done: {counts['verified_pairs']} verified pairs of {counts['matched_pairs']} matched, "
             f"{counts['inlier_matches']} inlier matches ({timer.wall['matching']:.0f} s)")
    with timer.step("mapping"):
        models, mapper = map_models(database, image_dir, work_dir, config, len(manifest_images), log)
    log.info(f"mapping: {len(models)} model(s), sizes {[m.num_reg_images() for m in models]}; kept: {mapper}")
    return EngineResult(models, timer.wall, matcher, why, cameras, {"mapper_used": mapper, "database": counts},
                        cpu_seconds=timer.cpu)
