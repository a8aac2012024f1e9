"""Read a colmap_export back with pycolmap and collect the facts its checks judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pycolmap
from PIL import Image


@dataclass
class ExportFacts:
    images: int = 0
    points: int = 0
    image_size: str = ""
    camera_models: list[str] = field(default_factory=list)
    bytes: int = 0
    min_correspondences: int = 0
    mean_correspondences: float = 0.0
    without_correspondences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def verify_export(export_dir: Path, min_correspondences: int = 1) -> ExportFacts:
    """Facts of `export_dir` (images/ + sparse/0/); unreadable parts are listed in `problems`."""
    facts = ExportFacts()
    model_dir = export_dir / "sparse" / "0"
    try:
        model = pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # pycolmap raises ValueError/RuntimeError on missing or corrupt files
        facts.problems.append(f"cannot read {model_dir}: {exc}")
        return facts
    facts.points = model.num_points3D()
    facts.camera_models = sorted({cam.model.name for cam in model.cameras.values()})
    facts.problems += [f"camera model {m} is not PINHOLE" for m in facts.camera_models if m != "PINHOLE"]
    sizes: set[str] = set()
    counts: list[int] = []
    for image_id in sorted(model.reg_image_ids()):
        image = model.image(image_id)
        camera = model.camera(image.camera_id)
        n = sum(1 for p in image.points2D if p.has_point3D())
        counts.append(n)
        if n < min_correspondences:
            facts.without_correspondences.append(image.name)
        path = export_dir / "images" / image.name
        if not path.is_file():
            facts.problems.append(f"{image.name} missing from images/")
            continue
        with Image.open(path) as im:
            if im.size != (camera.width, camera.height):
                facts.problems.append(f"{image.name} is {im.size[0]}x{im.size[1]}, camera says "
                                      f"{camera.width}x{camera.height}")
        sizes.add(f"{camera.width}x{camera.height}")
    if not counts:
        facts.problems.append("the model has no registered images")
    facts.images = len(counts)
    facts.image_size = ", ".join(sorted(sizes))
    facts.min_correspondences = min(counts, default=0)
    facts.mean_correspondences = sum(counts) / len(counts) if counts else 0.0
    facts.bytes = sum(p.stat().st_size for p in export_dir.rglob("*") if p.is_file())
    return facts
