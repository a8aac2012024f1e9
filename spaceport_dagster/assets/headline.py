"""The order in which an asset's metadata reads in the Dagster UI: a few headline figures first (rounded, with
units), then the pictures and tables, then the plain figures (rounded), then one entry of timings and one of
everything else that is raw JSON.

The stages report what they measured; this module only arranges it. The stages' own keys stay (rounded), so
the CLI summary and anything reading a key keeps working.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from dagster import JsonMetadataValue, MarkdownMetadataValue, MetadataValue, PathMetadataValue, UrlMetadataValue

from spaceport_dagster.run_events import HEADLINE_FIGURES_KEY, plain
from spaceport_dagster.stages.ui_metadata import INLINE_MARKDOWN_LIMIT

# Per asset, prefixes of figures a stage also shows in a table of its own: folded into `details`, not rows.
IN_TABLES: dict[str, tuple[str, ...]] = {"sogs_bundle": ("error_",)}
# Keys that are timings (and any `seconds_<step>`), folded into the one `timings` entry (a stage's own markdown
# timings table stays).
TIMING_KEYS = {"seconds", "seconds_total", "wall_seconds", "train_seconds", "cpu_seconds", "psnr_seconds", "timings"}
Figures = dict[str, Any]


def rounded(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits (15.165016265487992 -> 15.17)."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def rounded_verdict(figures: dict[str, Any]) -> dict[str, Any]:
    """A check's numbers rounded to what they mean: `value` and `threshold` to the precision of 4 significant
    digits of the threshold (a verdict against 20.47 dB means nothing finer than 0.01 dB: 22.900572499160784 ->
    22.9, and a 1e-5 dB wobble against a 1 dB limit is 0.0); every other float to 4 significant digits."""
    out = {k: rounded(v) if isinstance(v, float) else v for k, v in figures.items()}
    threshold = figures.get("threshold")
    if isinstance(threshold, int | float) and not isinstance(threshold, bool) and math.isfinite(threshold) \
            and threshold != 0:
        decimals = max(0, 3 - math.floor(math.log10(abs(threshold))))
        for key in ("value", "threshold"):
            if isinstance(figures.get(key), float) and math.isfinite(figures[key]):
                out[key] = round(figures[key], decimals)
    return out


def size_text(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def _int(value: Any) -> str:
    return f"{int(value):,}"


def _image_set(m: Figures) -> dict[str, str]:
    out = {}
    if "usable_images" in m:
        out["photos"] = f"{_int(m['usable_images'])} usable" + (
            f", {_int(m['refused_files'])} refused" if m.get("refused_files") else "")
    if "gps_images" in m and m.get("usable_images"):
        out["GPS"] = f"{_int(m['gps_images'])}/{_int(m['usable_images'])} photos geotagged"
    if "total_bytes" in m:
        out["size"] = size_text(m["total_bytes"])
    return out


def _sparse_reconstruction(m: Figures) -> dict[str, str]:
    out = {}
    if "registered" in m:
        out["registered photos"] = str(m["registered"])
    if "points" in m:
        out["3D points"] = _int(m["points"])
    if m.get("mean_reprojection_error_px") is not None:
        out["reprojection error"] = f"{m['mean_reprojection_error_px']:.2f} px"
    if "georegistered" in m:
        out["georegistration"] = _georegistration(m)
    if "matcher" in m:
        out["matching"] = str(m["matcher"])
    return out


def _georegistration(m: Figures) -> str:
    if not m["georegistered"]:
        return "none: model units, not metres (local frame)"
    text = "GPS"
    if m.get("georegistration_residual_m") is not None:
        text += f", {m['georegistration_residual_m']:.2f} m residual"
    if m.get("georegistration_scale_uncertainty_pct") is not None:
        text += f", scale ±{m['georegistration_scale_uncertainty_pct']:.1f} %"
    if m.get("georegistration_heading_uncertainty_deg") is not None:
        text += f", heading ±{m['georegistration_heading_uncertainty_deg']:.1f}°"
    return text


def _colmap_export(m: Figures) -> dict[str, str]:
    out = {}
    if "images" in m:
        out["exported images"] = _int(m["images"]) + (f" at {m['image_size']}" if m.get("image_size") else "")
    if "points" in m:
        out["3D points"] = _int(m["points"])
    if "min_correspondences_per_image" in m:
        out["2D-3D per image"] = f"min {_int(m['min_correspondences_per_image'])}" + (
            f", mean {_int(m['mean_correspondences_per_image'])}" if "mean_correspondences_per_image" in m else "")
    if "bytes" in m:
        out["size"] = size_text(m["bytes"])
    return out


def _splat_model(m: Figures) -> dict[str, str]:
    out = {}
    if m.get("psnr") is not None:
        text = f"{m['psnr']:.1f} dB"
        if m.get("baseline_psnr") is not None:
            text += f" against {m['baseline_psnr']:.1f} dB baseline ({m['psnr'] - m['baseline_psnr']:+.1f} dB)"
        out["PSNR"] = text + (f" on {m['views']} test views" if m.get("views") else "")
    if m.get("ssim") is not None:
        out["SSIM"] = f"{m['ssim']:.3f}"
    if m.get("alpha_mean") is not None:
        out["coverage"] = f"{100 * m['alpha_mean']:.1f} % (mean alpha)"
    if "gaussians" in m:
        out["Gaussians"] = _int(m["gaussians"])
    if "ply_bytes" in m:
        out["PLY"] = size_text(m["ply_bytes"])
    if "steps" in m:
        out["training"] = f"{_int(m['steps'])} steps" + (f" on {m['device']}" if m.get("device") else "")
    return out


def _sogs_bundle(m: Figures) -> dict[str, str]:
    out = {}
    if "bundle_bytes" in m:
        out["size"] = size_text(m["bundle_bytes"]) + (f", {m['ratio']:.1f}x smaller than the PLY"
                                                      if m.get("ratio") else "")
    if m.get("psnr_decoded_db") is not None:
        out["PSNR"] = f"{m['psnr_decoded_db']:.1f} dB decoded" + (
            f" ({-m['psnr_drop_db']:+.2f} dB against the PLY)" if m.get("psnr_drop_db") is not None else "")
    if "splats" in m:
        out["Gaussians"] = _int(m["splats"])
    return out


HEADLINES: dict[str, Callable[[Figures], dict[str, str]]] = {
    "image_set": _image_set, "sparse_reconstruction": _sparse_reconstruction, "colmap_export": _colmap_export,
    "splat_model": _splat_model, "sogs_bundle": _sogs_bundle,
}


def where_it_ran(m: Figures) -> str | None:
    """Local or SageMaker, with the instance type, job and estimated cost."""
    if m.get("sagemaker_job_name"):
        text = f"SageMaker {m.get('sagemaker_job_kind', 'job')} {m['sagemaker_job_name']} on " \
               f"{m.get('sagemaker_instance_type', '?')}"
        if m.get("sagemaker_estimated_cost_usd") is not None:
            text += f", about ${m['sagemaker_estimated_cost_usd']:.3f}"
        return text
    return "this machine" + (f", {m['device']}" if m.get("device") else "")


def ran_on_tag(m: Figures) -> str:
    """Where the stage ran as a tag value Dagster accepts (letters, digits, `_-.`, at most 63):
    `sagemaker-ml.g5.xlarge`, `local-cuda`, `local-cpu`, or `local` for a stage that does not report a device."""
    if m.get("sagemaker_job_name"):
        instance = re.sub(r"[^A-Za-z0-9_.-]", "_", str(m.get("sagemaker_instance_type") or "unknown"))
        return f"sagemaker-{instance}"[:63]
    device = str(m.get("device") or "").lower()
    return "local-cpu" if device.startswith("cpu") else "local-cuda" if device else "local"


def _shown_inline(value: Any) -> bool:
    """A picture the UI shows without a click: markdown with an image, under the inline length limit."""
    return (isinstance(value, MarkdownMetadataValue) and "](data:image" in value.value
            and len(value.value) < INLINE_MARKDOWN_LIMIT)


class _Reading(dict):
    """The stage's figures, noting which keys a headline builder looked at."""

    def __init__(self, figures: Figures) -> None:
        super().__init__(figures)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def arrange(asset: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The stage's metadata in reading order, with the headline figures first (see the module's docstring).
    The figures a headline row shows are not repeated as rows: they are kept, rounded, in the one JSON entry
    HEADLINE_FIGURES_KEY for whoever reads them by key (run_events.flat_metadata)."""
    values = _Reading({k: plain(v) for k, v in metadata.items()})
    head: dict[str, Any] = {k: MetadataValue.text(v) for k, v in HEADLINES.get(asset, lambda m: {})(values).items()}
    ran = where_it_ran(values)
    if ran:
        head["ran on"] = MetadataValue.text(ran)
    shown = {k for k in values.read if k in metadata} if head else set()
    pictures: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    headline_figures: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for key, value in metadata.items():
        raw = plain(value)
        if isinstance(value, MarkdownMetadataValue | PathMetadataValue | UrlMetadataValue):
            pictures[key] = value  # previews, plots, tables and links (a stage's markdown timings table too)
        elif key in TIMING_KEYS or key.startswith("seconds_"):
            timings[key] = rounded_tree(raw)
        elif isinstance(value, JsonMetadataValue) or isinstance(raw, dict | list) or key.startswith(
                IN_TABLES.get(asset, ())):
            details[key] = rounded_tree(raw)
        elif key in shown:
            headline_figures[key] = rounded_tree(raw)
        elif isinstance(raw, float):
            figures[key] = rounded(raw)
        else:
            figures[key] = value
    inline = {k: v for k, v in pictures.items() if _shown_inline(v)}
    pictures = {**inline, **{k: v for k, v in pictures.items() if k not in inline}}
    out: dict[str, Any] = {**head, **pictures, **{k: v for k, v in figures.items() if k not in head}}
    if headline_figures:
        out[HEADLINE_FIGURES_KEY] = MetadataValue.json(headline_figures)
    if timings:
        out["timings (s)"] = MetadataValue.json(timings)
    if details:
        out["details"] = MetadataValue.json(details)
    return out


def rounded_tree(value: Any) -> Any:
    """`value` with every float in it rounded (`rounded`): JSON entries read as well as rows."""
    if isinstance(value, float):
        return rounded(value)
    if isinstance(value, dict):
        return {k: rounded_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded_tree(v) for v in value]
    return value
