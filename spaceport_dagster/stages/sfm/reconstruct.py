"""COLMAP engine: SIFT features, matching and mapping on a fresh database; every step timed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from .cameras import camera_params, group_cameras
from .config import SfmConfig
from .matching import run_matcher, select_matcher, write_position_priors


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


def extraction_options(config: SfmConfig) -> pycolmap.FeatureExtractionOptions:
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = config.max_image_size
    options.num_threads = config.num_threads
    options.sift.max_num_features = config.max_num_features
    options.sift.first_octave = config.first_octave
    options.sift.num_octaves = config.num_octaves
    options.sift.octave_resolution = config.octave_resolution
    options.sift.peak_threshold = config.peak_threshold
    return options


def extract(database: Path, image_dir: Path, manifest_images: list[dict[str, Any]], config: SfmConfig,
            log: logging.Logger) -> int:
    """Features for every image; one COLMAP camera per EXIF camera group, focal prior from EXIF."""
    groups = group_cameras(manifest_images)
    cameras = 0
    for group in groups:
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        reader.camera_params = camera_params(config.camera_model, group)
        mode = pycolmap.CameraMode.SINGLE if group.shared else pycolmap.CameraMode.PER_IMAGE
        cameras += 1 if group.shared else len(group.images)
        prior = f"{group.focal_prior_px:.1f} px" if group.focal_prior_px else "none (COLMAP default)"
        log.info(f"camera {group.camera!r} {group.width}x{group.height}: {len(group.images)} images, "
                 f"{'shared' if group.shared else 'per-image'} intrinsics, focal prior {prior}")
        pycolmap.extract_features(database, image_dir, image_names=group.images, camera_mode=mode,
                                  reader_options=reader, extraction_options=extraction_options(config),
                                  device=pycolmap.Device.cpu)
    if not config.trust_exif_focal:
        untrust_focal_priors(database)
    return cameras


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
    return options


def global_options(config: SfmConfig) -> pycolmap.GlobalPipelineOptions:
    options = pycolmap.GlobalPipelineOptions()
    options.num_threads = config.num_threads
    options.random_seed = config.random_seed
    options.min_num_matches = config.min_num_inliers
    return options


def run_mapper(mapper: str, database: Path, image_dir: Path, work_dir: Path,
               config: SfmConfig) -> list[pycolmap.Reconstruction]:
    out = work_dir / f"models-{mapper}"
    out.mkdir(parents=True, exist_ok=True)
    if mapper == "global":
        models = pycolmap.global_mapping(database, image_dir, out, global_options(config))
    else:
        models = pycolmap.incremental_mapping(database, image_dir, out, incremental_options(config))
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
    models = [(m, config.mapper) for m in run_mapper(config.mapper, database, image_dir, work_dir, config)]
    best = max((_size(m) for m, _ in models), default=(0, 0))
    if config.mapper == "incremental" and config.global_fallback and best[0] < n_images:
        log.info(f"incremental mapping registered {best[0]}/{n_images}; trying the global mapper as well")
        models += [(m, "global") for m in run_mapper("global", database, image_dir, work_dir, config)]
    models.sort(key=lambda item: _size(item[0]), reverse=True)
    return [m for m, _ in models], (models[0][1] if models else config.mapper)


def reconstruct(image_dir: Path, work_dir: Path, manifest_images: list[dict[str, Any]], config: SfmConfig,
                gps_enu: dict[str, np.ndarray], log: logging.Logger) -> EngineResult:
    """Run features, matching and mapping; `gps_enu` (image name -> ENU metres) feeds the spatial matcher."""
    database = work_dir / "database.db"
    database.unlink(missing_ok=True)
    pycolmap.set_random_seed(config.random_seed)
    timer = StepTimer()
    with timer.step("features"):
        cameras = extract(database, image_dir, manifest_images, config, log)

    matcher, why = select_matcher(config, manifest_images)
    if matcher == "spatial" and len(gps_enu) < 2:
        matcher, why = "exhaustive", "spatial matching needs GPS; fell back to every pair"
    log.info(f"matching: {matcher} ({why})")
    with timer.step("matching"):
        if matcher == "spatial":
            write_position_priors(database, gps_enu)
        run_matcher(matcher, database, config)
    with timer.step("mapping"):
        models, mapper = map_models(database, image_dir, work_dir, config, len(manifest_images), log)
    log.info(f"mapping: {len(models)} model(s), sizes {[m.num_reg_images() for m in models]}; kept: {mapper}")
    return EngineResult(models, timer.wall, matcher, why, cameras, {"mapper_used": mapper}, cpu_seconds=timer.cpu)
