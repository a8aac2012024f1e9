"""PSNR cost of the compression on the test views, under the one evaluation protocol (`stages/evaluation.py`).

The uncompressed PLY and the decoded bundle are each rendered plainly (black background, no colour model) on
the splat_model's test views (cameras.json, `heldout`) at the export's resolution, and scored against the
export's photos: the uncompressed figure is the one splat_model published. Without the photos nothing is
measured, and the stage's check says so and fails: a drop that could not be measured never passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaceport_dagster.stages.ply import GaussianCloud

from .config import SogConfig


@dataclass
class HeldoutPsnr:
    measured: bool
    reason: str = ""  # why it was not measured
    views: list[str] = field(default_factory=list)
    resolution: str = ""
    psnr_uncompressed_db: float | None = None
    psnr_decoded_db: float | None = None
    psnr_drop_db: float | None = None
    alpha_uncompressed: float | None = None
    alpha_decoded: float | None = None
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("reason", "views", "measured")}


def heldout_psnr(source: GaussianCloud, decoded: GaussianCloud, splat_dir: Path, photos_dir: Path | None,
                 cfg: SogConfig, log: logging.Logger) -> HeldoutPsnr:
    t0 = time.perf_counter()
    cameras = splat_dir / "cameras.json"
    if not cameras.is_file():
        return HeldoutPsnr(False, f"the splat artifact has no cameras.json ({cameras})")
    if photos_dir is None:
        return HeldoutPsnr(False, "no photos to score against (input 'export', the colmap_export, was not given)")
    if not photos_dir.is_dir():
        return HeldoutPsnr(False, f"the photos folder {photos_dir} does not exist")
    try:
        from spaceport_dagster.stages import render as renderer
        from spaceport_dagster.stages.evaluation import pooled_psnr_drop, score_plain
    except ImportError as exc:
        return HeldoutPsnr(False, f"the renderer is not importable ({exc})")
    views = [v for v in renderer.load_views(cameras) if v.heldout]
    if not views:
        return HeldoutPsnr(False, "cameras.json marks no test views")
    missing = [v.name for v in views if not (photos_dir / v.name).is_file()]
    if missing:
        return HeldoutPsnr(False, f"{len(missing)} test-view photo(s) missing in {photos_dir}: {', '.join(missing[:5])}")
    device = renderer.pick_device(cfg.render_device)
    photos = [renderer.load_photo(photos_dir / v.name, v.width, v.height).to(device) for v in views]
    before = score_plain(renderer.cloud_to_params(source, device), source.sh_degree, views, photos)
    after = score_plain(renderer.cloud_to_params(decoded, device), decoded.sh_degree, views, photos)
    for b, a in zip(before.views, after.views, strict=True):
        log.info(f"test view {b.name}: {b.psnr:.2f} dB uncompressed, {a.psnr:.2f} dB decoded")
    return HeldoutPsnr(True, views=[v.name for v in views], resolution=before.resolution,
                       psnr_uncompressed_db=before.psnr, psnr_decoded_db=after.psnr,
                       psnr_drop_db=pooled_psnr_drop(before, after), alpha_uncompressed=before.alpha,
                       alpha_decoded=after.alpha, seconds=time.perf_counter() - t0)
