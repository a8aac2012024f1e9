"""The splat_model quality gates, as plain functions of the trained model and its metrics."""

from __future__ import annotations

import math
from pathlib import Path

from spaceport_dagster.stages.ply import GaussianCloud, PlyFormatError, property_names, read_ply
from spaceport_dagster.stages.report import CheckOutcome

from .config import TrainConfig


def check_min_gaussians(cloud: GaussianCloud, cfg: TrainConfig) -> CheckOutcome:
    n = len(cloud)
    return CheckOutcome("min_gaussians", n >= cfg.min_gaussians,
                        f"{n} Gaussians (need at least {cfg.min_gaussians})", metadata={"gaussians": n})


def check_finite(cloud: GaussianCloud) -> CheckOutcome:
    ok = cloud.all_finite()
    return CheckOutcome("finite_parameters", ok,
                        "all Gaussian parameters are finite" if ok else "the model has NaN or infinite parameters")


def check_ply(path: Path, expected: int) -> CheckOutcome:
    """Re-read the written PLY: standard property layout (45 f_rest) and the expected count."""
    try:
        from_disk = read_ply(path)
    except (PlyFormatError, OSError) as exc:
        return CheckOutcome("ply_readable", False, f"{path.name} is not readable: {exc}")
    with open(path, "rb") as fh:  # the header only; the splat itself can be hundreds of MB
        head = fh.read(8192)
    header = head.split(b"end_header")[0].decode("ascii", "replace")
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    problems = []
    if props != property_names(15):
        problems.append("property list differs from the standard INRIA layout (x..rot_3 with 45 f_rest)")
    if len(from_disk) != expected:
        problems.append(f"{len(from_disk)} vertices, expected {expected}")
    if not from_disk.all_finite():
        problems.append("non-finite values")
    ok = not problems
    return CheckOutcome("ply_readable", ok,
                        f"{path.name} re-read: {len(from_disk)} Gaussians, {len(props)} properties"
                        if ok else f"{path.name}: " + "; ".join(problems))


def check_baseline(psnr: float, baseline: float, cfg: TrainConfig) -> CheckOutcome:
    margin = cfg.baseline_margin_db
    ok = math.isfinite(psnr) and math.isfinite(baseline) and psnr >= baseline + margin
    return CheckOutcome(
        "beats_mean_colour_baseline", ok,
        f"held-out PSNR {psnr:.2f} dB vs {baseline:.2f} dB for the training photos' mean colour "
        f"(need +{margin:.1f} dB)", metadata={"psnr": psnr, "baseline_psnr": baseline})


def check_floor(psnr: float, cfg: TrainConfig) -> CheckOutcome:
    ok = math.isfinite(psnr) and psnr >= cfg.psnr_floor_db
    return CheckOutcome("absolute_psnr_floor", ok,
                        f"held-out PSNR {psnr:.2f} dB (floor {cfg.psnr_floor_db:.1f} dB; few-view scenes "
                        "legitimately score lower, so this only warns)", blocking=False)


def quality_checks(cloud: GaussianCloud, ply_path: Path, psnr: float, baseline: float,
                   cfg: TrainConfig) -> list[CheckOutcome]:
    return [check_min_gaussians(cloud, cfg), check_finite(cloud), check_ply(ply_path, len(cloud)),
            check_baseline(psnr, baseline, cfg), check_floor(psnr, cfg)]
