"""Export stage: sparse_reconstruction + image_set -> colmap_export (`images/` PINHOLE + `sparse/0/`).

The undistorter writes `images/`, `sparse/` and dense-stereo helpers; the helpers are dropped and the model
moves to `sparse/0/`, the layout 3DGS trainers read. The export is then read back and verified: the seed
pipeline once exported a model with no 2D-3D correspondences and training died on it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycolmap

from spaceport_dagster.stages.config import from_dict
from spaceport_dagster.stages.report import CheckOutcome, StageReport

from .verify import ExportFacts, verify_export

MODEL_SUFFIXES = (".bin", ".txt")


@dataclass
class ExportConfig:
    max_image_size: int = 1600  # long side of the undistorted images; -1 keeps the source size
    jpeg_quality: int = 95
    min_correspondences: int = 1  # per exported image


def find_model(sparse_artifact: Path) -> Path:
    """The folder holding cameras.bin etc.: the artifact's `sparse/`, or the given folder itself."""
    for candidate in (sparse_artifact / "sparse", sparse_artifact):
        if (candidate / "cameras.bin").is_file() and (candidate / "images.bin").is_file():
            return candidate
    raise FileNotFoundError(f"no COLMAP binary model (cameras.bin, images.bin) in {sparse_artifact} or its sparse/")


def undistort(model_dir: Path, image_dir: Path, output: Path, config: ExportConfig) -> None:
    options = pycolmap.UndistortCameraOptions()
    options.max_image_size = config.max_image_size
    pycolmap.undistort_images(output, model_dir, image_dir, output_type="COLMAP", undistort_options=options,
                              jpeg_quality=config.jpeg_quality)
    for extra in ("stereo", "run-colmap-geometric.sh", "run-colmap-photometric.sh"):
        target = output / extra
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    sparse = output / "sparse"
    final = sparse / "0"
    final.mkdir(parents=True, exist_ok=True)
    for item in list(sparse.iterdir()):
        if item.is_file() and item.suffix in MODEL_SUFFIXES:
            item.rename(final / item.name)


def export(sparse_artifact: Path, image_set: Path, output: Path, config: ExportConfig,
           log: logging.Logger) -> StageReport:
    model_dir = find_model(sparse_artifact)
    image_dir = image_set / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_set} is not an image_set artifact: no images/ folder")
    output.mkdir(parents=True, exist_ok=True)
    for stale in ("images", "sparse"):
        shutil.rmtree(output / stale, ignore_errors=True)
    undistort(model_dir, image_dir, output, config)
    facts = verify_export(output, config.min_correspondences)
    log.info(f"export: {facts.images} images, {facts.points} points, min {facts.min_correspondences} / mean "
             f"{facts.mean_correspondences:.0f} correspondences per image")
    return _report(facts, config)


def _report(facts: ExportFacts, config: ExportConfig) -> StageReport:
    metadata: dict[str, Any] = {
        "images": facts.images,
        "points": facts.points,
        "image_size": facts.image_size,
        "camera_models": facts.camera_models,
        "bytes": facts.bytes,
        "min_correspondences_per_image": facts.min_correspondences,
        "mean_correspondences_per_image": round(facts.mean_correspondences, 1),
    }
    covered = facts.images - len(facts.without_correspondences)
    outcomes = [
        CheckOutcome(
            "every_image_has_correspondences",
            facts.images > 0 and not facts.without_correspondences,
            f"{covered}/{facts.images} exported images have >= {config.min_correspondences} 2D-3D correspondences "
            f"(min {facts.min_correspondences}, mean {facts.mean_correspondences:.0f})"
            + (f"; lacking: {', '.join(facts.without_correspondences[:10])}" if facts.without_correspondences
               else ""),
            metadata={"value": facts.min_correspondences, "threshold": config.min_correspondences,
                      "min": facts.min_correspondences, "mean": round(facts.mean_correspondences, 1)},
        ),
        CheckOutcome(
            "export_reads_back",
            not facts.problems,
            "export reads back with pycolmap: PINHOLE cameras, every image file present at its camera size"
            if not facts.problems else "export does not read back cleanly: " + "; ".join(facts.problems[:10]),
        ),
    ]
    return StageReport(metadata, outcomes)


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    missing = [name for name in ("sparse", "image_set") if name not in inputs]
    if missing:
        raise ValueError(f"export needs inputs 'sparse' (sparse_reconstruction) and 'image_set'; missing {missing}")
    return export(Path(inputs["sparse"]), Path(inputs["image_set"]), output, from_dict(ExportConfig, config), log)
