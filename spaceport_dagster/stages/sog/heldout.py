"""PSNR cost of the compression on the held-out views, rendered with the training stage's renderer.

With the photos (the colmap_export's images/), the drop is measured: PSNR(uncompressed render, photo) minus
PSNR(decoded render, photo), pooled over the views. Without them, the decoded render is compared with the
uncompressed render, and the drop is estimated from the triangle inequality
RMSE(decoded, photo) <= RMSE(uncompressed, photo) + RMSE(decoded, uncompressed), taking the uncompressed
error from the trainer's held-out PSNR in metrics.json.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud

from .config import SogConfig


@dataclass
class HeldoutPsnr:
    measured: str  # "photos", "estimate" or "" (not measured)
    reason: str = ""
    views: list[str] = field(default_factory=list)
    resolution: str = ""
    psnr_uncompressed_db: float | None = None
    psnr_decoded_db: float | None = None
    psnr_drop_db: float | None = None
    psnr_decoded_vs_uncompressed_db: float | None = None
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("reason",)}


def _psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def _pick(views: list, n: int) -> list:
    if len(views) <= n:
        return views
    return [views[i] for i in sorted(set(np.linspace(0, len(views) - 1, n).round().astype(int).tolist()))]


def _trainer_psnr(splat_dir: Path) -> float | None:
    try:
        value = json.loads((splat_dir / "metrics.json").read_text())["summary"]["psnr"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def heldout_psnr(source: GaussianCloud, decoded: GaussianCloud, splat_dir: Path, photos_dir: Path | None,
                 cfg: SogConfig, log: logging.Logger) -> HeldoutPsnr:
    t0 = time.perf_counter()
    if cfg.psnr_views == 0:
        return HeldoutPsnr("", "held-out rendering is switched off (psnr_views = 0)")
    cameras = splat_dir / "cameras.json"
    if not cameras.is_file():
        return HeldoutPsnr("", f"the splat artifact has no cameras.json ({cameras})")
    try:
        from spaceport_dagster.stages import render as renderer
    except ImportError as exc:
        return HeldoutPsnr("", f"the renderer is not importable ({exc})")
    views = [v for v in renderer.load_views(cameras) if v.heldout]
    if not views:
        return HeldoutPsnr("", "cameras.json marks no held-out views")
    views = _pick(views, cfg.psnr_views)
    photos = photos_dir if photos_dir is not None and photos_dir.is_dir() else None
    if photos is not None:
        missing = [v.name for v in views if not (photos / v.name).is_file()]
        if missing:
            log.warning(f"held-out photo(s) missing in {photos}: {', '.join(missing[:5])}; estimating the drop instead")
            photos = None
    trainer_psnr = _trainer_psnr(splat_dir)
    if photos is None and trainer_psnr is None:
        return HeldoutPsnr("", "no photos (input 'export') and no held-out PSNR in metrics.json to compare with")
    device = renderer.pick_device(cfg.render_device)
    source_params, decoded_params = renderer.cloud_to_params(source, device), renderer.cloud_to_params(decoded, device)
    fid_se = orig_se = dec_se = 0.0
    pixels = 0
    sizes = set()
    for view in views:
        scale = min(1.0, cfg.psnr_max_side / max(view.width, view.height)) if cfg.psnr_max_side else 1.0
        w, h = max(1, round(view.width * scale)), max(1, round(view.height * scale))
        sizes.add(f"{w}x{h}")
        a = renderer.render(source_params, view, w, h, sh_degree=source.sh_degree).double()
        b = renderer.render(decoded_params, view, w, h, sh_degree=decoded.sh_degree).double()
        fid_se += float(((a - b) ** 2).sum())
        if photos is not None:
            photo = renderer.load_photo(photos / view.name, w, h).to(a.device).double()
            orig_se += float(((a - photo) ** 2).sum())
            dec_se += float(((b - photo) ** 2).sum())
        pixels += a.numel()
        log.info(f"held-out view {view.name}: rendered {w}x{h}")
    result = HeldoutPsnr("photos" if photos is not None else "estimate", views=[v.name for v in views],
                         resolution=", ".join(sorted(sizes)))
    result.psnr_decoded_vs_uncompressed_db = _psnr(fid_se / pixels)
    if photos is not None:
        result.psnr_uncompressed_db = _psnr(orig_se / pixels)
        result.psnr_decoded_db = _psnr(dec_se / pixels)
        result.psnr_drop_db = result.psnr_uncompressed_db - result.psnr_decoded_db
    else:
        assert trainer_psnr is not None
        rmse_orig = 10.0 ** (-trainer_psnr / 20.0)
        rmse_fid = math.sqrt(fid_se / pixels)
        result.psnr_uncompressed_db = trainer_psnr
        result.psnr_drop_db = 20.0 * math.log10(1.0 + rmse_fid / rmse_orig)
        result.reason = ("no photos given (input 'export'): drop estimated from the render fidelity and the "
                         "trainer's held-out PSNR")
    result.seconds = time.perf_counter() - t0
    return result
