"""SfM stage: image_set -> sparse_reconstruction (`sparse/` COLMAP binary of the kept model + `report.json`).

The largest model is kept (most registered images, then most points). When GPS allows, it is expressed in
east-north-up metres around the first GPS fix. A run that yields no model reports zero points, so the
gates fail with a clear message instead of the stage crashing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pycolmap
from PIL import Image

from spaceport_dagster.stages.config import to_dict
from spaceport_dagster.stages.report import CheckOutcome, StageReport, json_value, md
from spaceport_dagster.stages.sfm_preview import top_down_markdown
from spaceport_dagster.stages.ui_metadata import inline_picture_markdown, timings_markdown

from .config import SfmConfig, load_config
from .georegister import Georegistration, georegister, gps_positions, level_local_frame
from .gps_outliers import gps_consensus
from .gravity import CameraAxes, estimate_up, measure_uprightness
from .reconstruct import EngineResult, reconstruct
from .upright import upright_check


def read_manifest(image_set: Path) -> list[dict[str, Any]]:
    manifest = image_set / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{image_set} is not an image_set artifact: no manifest.json")
    images = json.loads(manifest.read_text())["images"]
    missing = [r["name"] for r in images if not (image_set / "images" / r["name"]).is_file()]
    if missing:
        raise FileNotFoundError(f"image_set lists {len(missing)} image(s) missing from images/: {missing[:5]}")
    return images


# OpenSfM commands -> the stage's step names, so both engines report the same timings
OPENSFM_STEPS = {"extract_metadata": "features", "detect_features": "features", "match_features": "matching",
                 "create_tracks": "mapping", "reconstruct": "mapping", "convert": "mapping"}


def run_opensfm(image_dir: Path, work_dir: Path, config: SfmConfig, log: logging.Logger) -> EngineResult:
    """The OpenSfM engine (spaceport_dagster.stages.opensfm), imported only when asked for."""
    try:
        from spaceport_dagster.stages.opensfm import engine
    except ImportError as exc:
        raise RuntimeError("engine 'opensfm' is not available in this installation "
                           f"(spaceport_dagster.stages.opensfm.engine: {exc}); use engine 'colmap'") from exc
    options = {"max_image_size": config.max_image_size, "max_num_features": config.max_num_features,
               **config.opensfm_options}
    from spaceport_dagster.stages.opensfm.convert import NoReconstruction

    cpu0 = time.process_time()
    try:
        result = engine.reconstruct(image_dir, work_dir, options, log)  # OpenSfmUnavailable says how to install it
    except NoReconstruction as exc:  # like COLMAP making no model: report it so the gates fail with a message
        log.warning(f"OpenSfM made no reconstruction: {exc}")
        return EngineResult([], {}, "opensfm", "OpenSfM's own pair selection", 0, {"opensfm_error": str(exc)},
                            cpu_seconds={"opensfm_parent_process": time.process_time() - cpu0})
    seconds: dict[str, float] = {}
    for step, value in result.step_seconds.items():
        name = OPENSFM_STEPS.get(step, step)
        seconds[name] = seconds.get(name, 0.0) + float(value)
    kept = result.reconstruction  # always a model: convert raises NoReconstruction when OpenSfM made none
    return EngineResult(
        [kept], seconds, "opensfm", "OpenSfM's own pair selection", kept.num_cameras(),
        {"opensfm": result.metadata(), "dropped_model_sizes": [d.images for d in result.dropped_reconstructions]},
        # OpenSfM runs as child processes: their CPU time is not this process's
        cpu_seconds={"opensfm_parent_process": time.process_time() - cpu0},
    )


def largest(models: list[pycolmap.Reconstruction]) -> pycolmap.Reconstruction | None:
    return max(models, key=lambda m: (m.num_reg_images(), m.num_points3D()), default=None)


def checks(config: SfmConfig, registered: int, total: int, points: int, reproj: float | None,
           n_models: int, model: pycolmap.Reconstruction | None = None, gps_up: bool = True) -> list[CheckOutcome]:
    """`gps_up`: the model's up came from GPS altitudes (georegistered with `altitude_used`), not from its own
    cameras."""
    fraction = registered / total if total else 0.0
    none = "" if n_models else " (mapping produced no model: the images share too few matches)"
    upright = (upright_check(measure_uprightness(CameraAxes.of(model)), config.max_upright_deg, gps_up)
               if model is not None and registered >= 3 else
               CheckOutcome("upright", False, f"{registered} registered image(s): too few to judge which way is up"
                            f"{none}", metadata={"measured": False}))
    outcomes = [
        CheckOutcome("min_points", points >= config.min_points,
                     f"{points} 3D points (need at least {config.min_points}){none}",
                     metadata={"value": points, "points": points, "threshold": config.min_points}),
        CheckOutcome("registered_fraction", fraction >= config.min_registered_fraction,
                     f"{registered}/{total} images registered ({fraction:.0%}; need at least "
                     f"{config.min_registered_fraction:.0%}){none}",
                     metadata={"value": round(fraction, 4), "registered": registered, "total": total,
                               "threshold": config.min_registered_fraction}),
        CheckOutcome("reprojection_error", reproj is not None and reproj <= config.max_reprojection_error_px,
                     f"mean reprojection error {reproj:.3f} px (warn above {config.max_reprojection_error_px} px)"
                     if reproj is not None else "no model, so no reprojection error",
                     blocking=False, metadata={"value": reproj, "threshold": config.max_reprojection_error_px,
                                               "threshold_px": config.max_reprojection_error_px}),
    ]
    return [*outcomes[:2], upright, *outcomes[2:]]


def sfm(image_set: Path, output: Path, config: SfmConfig, log: logging.Logger) -> StageReport:
    # Fixes far from the rest (another continent) steer neither matching nor georegistration.
    uploaded = read_manifest(image_set)
    consensus = gps_consensus(uploaded, config.gps_link_m)
    manifest_images = consensus.without_outliers(uploaded)
    robust_fallback = (bool(consensus.outliers) and config.matcher == "auto"
                       and len(uploaded) <= 2 * config.exhaustive_max_images)
    if consensus.outliers:
        log.warning(f"GPS: {consensus.reason}: {', '.join(consensus.outliers[:20])}")
    if robust_fallback:  # without trustworthy GPS, every pair is the most robust choice while it is affordable
        config = dataclasses.replace(config, matcher="exhaustive")
    image_dir = image_set / "images"
    origin, gps_enu = gps_positions(manifest_images)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sfm-") as tmp:
        work_dir = Path(tmp)
        if config.engine == "opensfm":
            result = run_opensfm(image_dir, work_dir, config, log)
        else:
            result = reconstruct(image_dir, work_dir, manifest_images, config, gps_enu, log)
        result.extra["gps_consensus"] = consensus.to_dict()
        if robust_fallback:
            result.matcher_reason = f"every pair: GPS of {len(consensus.outliers)} image(s) left out ({consensus.reason})"
        elif consensus.outliers:
            result.matcher_reason += f" (GPS of {len(consensus.outliers)} image(s) left out: {consensus.reason})"
        model = largest(result.models)
        geo = Georegistration(False, "no model")
        start, cpu0 = time.perf_counter(), time.process_time()
        if model is not None and config.georegister:
            geo = georegister(model, manifest_images, config.georegister_min_images, config.georegister_max_error_m,
                              log, config.georegister_max_altitude_tilt_deg,
                              config.georegister_min_vertical_tolerance_m, config.georegister_max_uncertainty,
                              config.georegister_warn_uncertainty)
        elif model is not None:
            geo = level_local_frame(model, estimate_up(CameraAxes.of(model)), "disabled by config", origin, 0, log)
        result.seconds["georegistration"] = time.perf_counter() - start
        result.cpu_seconds["georegistration"] = time.process_time() - cpu0
        if model is not None:
            sparse = output / "sparse"
            shutil.rmtree(sparse, ignore_errors=True)
            sparse.mkdir()
            model.write_binary(str(sparse))
        if config.keep_database and (work_dir / "database.db").exists():
            shutil.copy2(work_dir / "database.db", output / "database.db")
    return _report(output, config, manifest_images, result, model, geo)


def _report(output: Path, config: SfmConfig, manifest_images: list[dict[str, Any]], result: EngineResult,
            model: pycolmap.Reconstruction | None, geo: Georegistration) -> StageReport:
    total = len(manifest_images)
    registered = model.num_reg_images() if model is not None else 0
    points = model.num_points3D() if model is not None else 0
    reproj = float(model.compute_mean_reprojection_error()) if model is not None and points else None
    track = float(model.compute_mean_track_length()) if model is not None and points else 0.0
    seconds = {k: round(v, 2) for k, v in result.seconds.items()}
    metadata: dict[str, Any] = {
        "engine": config.engine,
        "registered_images": registered,
        "total_images": total,
        "registered": f"{registered}/{total}",
        "points": points,
        "mean_track_length": round(track, 3),
        "mean_reprojection_error_px": round(reproj, 4) if reproj is not None else None,
        "models": len(result.models) + len(result.extra.get("dropped_model_sizes", [])),
        "cameras": result.cameras,
        "matcher": result.matcher,
        "matcher_reason": result.matcher_reason,
        "mapper": result.extra.get("mapper_used", config.mapper) if config.engine == "colmap" else "opensfm",
        **{f"seconds_{k}": v for k, v in seconds.items()},
        "seconds_total": round(sum(result.seconds.values()), 2),
        "georegistered": geo.georegistered,
        "georegistration_residual_m": _round(geo.residual_rms_m),
        "georegistration_frame": geo.frame,
        "gps_altitude_used": geo.altitude_used,
        "gps_altitude_reason": geo.altitude_reason,
        "georegistration_horizontal_rms_m": _round(geo.residual_horizontal_rms_m),
        "georegistration_vertical_rms_m": _round(geo.residual_vertical_rms_m),
        "gps_outliers": len(geo.outliers),
        "units": geo.units,
        "georegistration_scale_uncertainty_pct": _round(100 * geo.scale_uncertainty)
        if geo.scale_uncertainty is not None else None,
        "georegistration_heading_uncertainty_deg": _round(geo.heading_uncertainty_deg),
        "gps_noise_m": _round(geo.gps_noise_m),
    }
    report = {
        "metadata": metadata,
        "cpu_seconds": {k: round(v, 2) for k, v in result.cpu_seconds.items()},
        "georegistration": geo.to_dict(),
        "config": to_dict(config),
        "dropped_models": sorted((m.num_reg_images() for m in result.models if m is not model), reverse=True),
        "unregistered_images": sorted({r["name"] for r in manifest_images} - (
            {model.image(i).name for i in model.reg_image_ids()} if model is not None else set())),
        **result.extra,
    }
    outcomes = checks(config, registered, total, points, reproj, metadata["models"], model,
                      geo.georegistered and geo.altitude_used)
    gps = result.extra.get("gps_consensus", {"outliers": [], "reason": "GPS not examined"})
    outcomes.append(CheckOutcome(  # reported with or without GPS: every declared check must report
        "gps_consistent", not gps["outliers"],
        gps["reason"] + (": " + ", ".join(gps["outliers"][:20]) if gps["outliers"] else ""),
        blocking=False, metadata={"outliers": gps["outliers"]}))
    outcomes.append(georegistration_check(geo, config.georegister_warn_uncertainty))
    left_out = report["unregistered_images"]
    outcomes.append(CheckOutcome(
        "all_images_registered", not left_out,
        f"{len(left_out)} of {total} images left out of the model (another scene, too little overlap, or blur): "
        + ", ".join(left_out[:20]) + (" ..." if len(left_out) > 20 else "") if left_out else f"all {total} registered",
        blocking=False, metadata={"left_out": left_out}))
    report["checks"] = [{"name": c.name, "passed": c.passed, "blocking": c.blocking, "description": c.description}
                        for c in outcomes]
    (output / "report.json").write_text(json.dumps(report, indent=2, default=str))
    metadata["georegistration"] = json_value(geo.to_dict())
    metadata["timings"] = md(timings_markdown(seconds))
    if model is not None and points:
        text, png = top_down_markdown(model, geo.georegistered)
        (output / "top_down.png").write_bytes(png)
        metadata["top_down"] = md(inline_picture_markdown(Image.open(io.BytesIO(png)), "top-down view",
                                                          "top-down view; full size below"))
        metadata["top_down_view"] = md(text)
    return StageReport(metadata, outcomes)


def georegistration_check(geo: Georegistration, warn: float) -> CheckOutcome:
    """A warning in the UI unless the model is in metres with scale and heading known within `warn` (1 sigma)."""
    metadata = {"georegistered": geo.georegistered, "units": geo.units, "scale_uncertainty": geo.scale_uncertainty,
                "heading_uncertainty_deg": geo.heading_uncertainty_deg, "threshold": warn}
    if not geo.georegistered:
        return CheckOutcome("georegistration", False, f"not georegistered ({geo.reason}): the model is in model "
                            "units, not metres", blocking=False, metadata=metadata)
    if geo.scale_uncertainty is None or geo.heading_uncertainty_deg is None:
        return CheckOutcome("georegistration", False, "georegistered in metres, but the uncertainty of its scale "
                            "and heading could not be measured", blocking=False, metadata=metadata)
    text = (f"georegistered in metres: scale ±{100 * geo.scale_uncertainty:.1f} %, heading "
            f"±{geo.heading_uncertainty_deg:.1f} deg (1 sigma from {geo.inliers} GPS fixes; warn above "
            f"{100 * warn:g} %, heading in radians)")
    passed = max(geo.scale_uncertainty, math.radians(geo.heading_uncertainty_deg)) <= warn
    return CheckOutcome("georegistration", passed, text, blocking=False, metadata=metadata)


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    if "image_set" not in inputs:
        raise ValueError("sfm needs an input named 'image_set' (a folder with images/ and manifest.json)")
    return sfm(Path(inputs["image_set"]), output, load_config(config), log)
