"""The SOG stage: splat_model (point_cloud.ply, cameras.json) in, sogs_bundle (<name>.sog + bundle/) out.

Inputs: `splat` (the trained splat folder), `export` (the colmap_export folder; its images/ are the photos
the test-view PSNR drop is measured against: without them the psnr_drop check fails, saying why).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from spaceport_dagster.stages.ply import PlyFormatError, read_ply
from spaceport_dagster.stages.report import CheckOutcome, StageReport, json_value, md, path_value, plain_value

from .config import SogConfig, load_config
from .format import SH_COEFFS, SogFormatError
from .heldout import HeldoutPsnr, heldout_psnr
from .reader import read_sog
from .roundtrip import AttributeReport, reorder, roundtrip_errors
from .writer import write_sog


class SogStageError(RuntimeError):
    """The stage cannot start (missing or unreadable input)."""


def _error_table(errors: list[AttributeReport]) -> str:
    rows = ["| attribute | max error | bound | RMS error | unit |", "|---|---|---|---|---|"]
    for e in errors:
        bound = "—" if e.bound is None else f"{e.bound:.4g}"
        rows.append(f"| {e.name} | {e.max_error:.4g} | {bound} | {e.rms_error:.4g} | {e.unit} |")
    return "\n".join(rows)


def _psnr_check(result: HeldoutPsnr, cfg: SogConfig) -> CheckOutcome:
    limit = cfg.max_psnr_drop_db
    if not result.measured:
        return CheckOutcome("psnr_drop", False, f"PSNR drop could not be measured: {result.reason}",
                            metadata={"measured": False, "threshold": limit})
    drop = float(result.psnr_drop_db)
    return CheckOutcome("psnr_drop", drop <= limit,
                        f"test-view PSNR {result.psnr_uncompressed_db:.2f} dB uncompressed, "
                        f"{result.psnr_decoded_db:.2f} dB decoded (plain renders, {len(result.views)} views, "
                        f"{result.resolution}): drop {drop:.3f} dB, limit {limit} dB",
                        metadata={"value": drop, "threshold": limit, "measured": True})


def compress(splat_dir: Path, output: Path, cfg: SogConfig, log: logging.Logger,
             photos_dir: Path | None = None) -> StageReport:
    t_start = time.perf_counter()
    ply_path = splat_dir / "point_cloud.ply"
    if not ply_path.is_file():
        raise SogStageError(f"the splat artifact {splat_dir} has no point_cloud.ply")
    try:
        cloud = read_ply(ply_path)
    except PlyFormatError as exc:
        raise SogStageError(f"{ply_path}: {exc}") from exc
    ply_bytes = ply_path.stat().st_size
    output.mkdir(parents=True, exist_ok=True)
    sog_path = output / f"{cfg.bundle_name}.sog"
    log.info(f"compressing {len(cloud)} splats (SH degree {cloud.sh_degree}) from {ply_path}")
    written = write_sog(cloud, sog_path, output / "bundle", cfg.encode_options(), cfg.webp_settings())
    log.info(f"wrote {sog_path} ({written.sog_bytes} bytes) in {written.timings['total']:.1f} s")
    if (splat_dir / "cameras.json").is_file():  # the viewer shows where the photos were taken
        shutil.copyfile(splat_dir / "cameras.json", output / "cameras.json")
    seconds = time.perf_counter() - t_start

    checks: list[CheckOutcome] = []
    metadata: dict[str, Any] = {
        "splats": len(cloud), "sh_bands": written.encoded.sh_bands, "ply_bytes": ply_bytes,
        "bundle_bytes": written.sog_bytes, "ratio": ply_bytes / written.sog_bytes, "seconds": seconds,
        "bundle": path_value(str(sog_path)), "kmeans_method": written.encoded.kmeans_method,
        "palette_size": written.encoded.meta.get("shN", {}).get("count", 0),
        "timings": json_value({k: round(v, 3) for k, v in written.timings.items()}),
        "file_bytes": json_value({name: len(data) for name, data in written.files.items()}),
    }
    try:
        decoded = read_sog(sog_path)
        folder_decoded = read_sog(output / "bundle")
        same = len(folder_decoded) == len(decoded) and bool((folder_decoded.means == decoded.means).all())
        checks.append(CheckOutcome("bundle_decodes", same,
                                   f"{sog_path.name} and bundle/ decode with the SOG v2 reader"
                                   + ("" if same else "; but bundle/ decodes differently")))
    except SogFormatError as exc:
        checks.append(CheckOutcome("bundle_decodes", False, f"{sog_path.name} does not decode: {exc}"))
        decoded = None
    if decoded is None:
        checks.append(CheckOutcome("count_matches", False, "bundle did not decode"))
        checks.append(CheckOutcome("roundtrip_within_bounds", False, "bundle did not decode"))
    else:
        count_ok = len(decoded) == len(cloud) == written.encoded.meta["count"]
        checks.append(CheckOutcome("count_matches", count_ok,
                                   f"decoded {len(decoded)} splats, PLY has {len(cloud)}",
                                   metadata={"value": len(decoded), "threshold": len(cloud)}))
        source = reorder(cloud, written.order, SH_COEFFS[written.encoded.sh_bands])
        errors = roundtrip_errors(source, decoded, written.encoded.meta)
        failed = [e.name for e in errors if not e.passed]
        metadata["roundtrip"] = json_value({e.name: e.as_dict() for e in errors})
        table = _error_table(errors)
        metadata["roundtrip_table"] = md(table)
        for e in errors:
            metadata[f"error_{e.name}"] = e.max_error
        checks.append(CheckOutcome("roundtrip_within_bounds", not failed,
                                   "all attributes within the format's quantisation bounds" if not failed
                                   else f"out of bounds: {', '.join(failed)}",
                                   metadata={"table": md(table)}))
    ratio = metadata["ratio"]
    checks.append(CheckOutcome("size_ratio", ratio >= cfg.min_size_ratio,
                               f"bundle is {ratio:.1f}x smaller than the PLY ({written.sog_bytes} vs {ply_bytes} "
                               f"bytes); required >= {cfg.min_size_ratio}x",
                               metadata={"value": round(ratio, 3), "threshold": cfg.min_size_ratio, "ratio": ratio}))
    if decoded is not None:
        psnr = heldout_psnr(cloud, decoded, splat_dir, photos_dir, cfg, log)  # the full PLY, all its SH bands
    else:
        psnr = HeldoutPsnr(False, "bundle did not decode")
    metadata.update({k if k.startswith(("psnr", "alpha")) else f"psnr_{k}": v
                     for k, v in psnr.as_metadata().items()})
    metadata["psnr_views"] = len(psnr.views)
    metadata["psnr_measured"] = psnr.measured
    checks.append(_psnr_check(psnr, cfg))
    metadata["seconds_total"] = time.perf_counter() - t_start
    # JSON has no inf/NaN (an identical render gives an infinite PSNR): report those as null
    metadata = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metadata.items()}
    (output / "report.json").write_text(json.dumps(
        {"metadata": {k: plain_value(v) for k, v in metadata.items()},
         "checks": [{"name": c.name, "passed": c.passed, "description": c.description} for c in checks]},
        indent=1, default=str))
    return StageReport(metadata=metadata, checks=checks)


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    if "splat" not in inputs:
        raise SogStageError(f"the sog stage needs input 'splat' (the splat_model folder); got {sorted(inputs)}")
    cfg = load_config(config)
    photos = Path(inputs["export"]) / "images" if inputs.get("export") else None
    return compress(Path(inputs["splat"]), Path(output), cfg, log, photos)
