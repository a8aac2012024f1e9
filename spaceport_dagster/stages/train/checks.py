"""The splat_model quality gates, as plain functions of the trained model and its metrics."""

from __future__ import annotations

import math
from pathlib import Path

from spaceport_dagster.stages.evaluation import PlainScores
from spaceport_dagster.stages.ply import GaussianCloud, PlyFormatError, property_names, read_ply
from spaceport_dagster.stages.report import CheckOutcome

from .config import TrainConfig
from .coverage import SfmCoverage


def check_min_gaussians(cloud: GaussianCloud, cfg: TrainConfig) -> CheckOutcome:
    n = len(cloud)
    return CheckOutcome("min_gaussians", n >= cfg.min_gaussians,
                        f"{n} Gaussians (need at least {cfg.min_gaussians})",
                        metadata={"value": n, "threshold": cfg.min_gaussians})


def check_finite(cloud: GaussianCloud) -> CheckOutcome:
    ok = cloud.all_finite()
    return CheckOutcome("finite_parameters", ok,
                        "all Gaussian parameters are finite" if ok else "the model has NaN or infinite parameters")


def check_ply(path: Path, expected: int, from_disk: GaussianCloud | None = None) -> CheckOutcome:
    """The written PLY read back: standard property layout (45 f_rest) and the expected count. `from_disk`: the
    file as the caller already read it back (the stage scores that read), so the splat is not read twice."""
    if from_disk is None:
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


def check_baseline(plain: PlainScores, cfg: TrainConfig) -> CheckOutcome:
    """The published splat, rendered plainly on the test views, against a flat image of the mean colour."""
    margin = cfg.baseline_margin_db
    psnr, baseline = plain.psnr, plain.baseline_psnr
    ok = baseline is not None and math.isfinite(psnr) and math.isfinite(baseline) and psnr >= baseline + margin
    base_text = "not measured" if baseline is None else f"{baseline:.2f} dB"
    return CheckOutcome(
        "beats_mean_colour_baseline", ok,
        f"test-view PSNR {psnr:.2f} dB (published PLY, black background, no colour model, {plain.resolution}) "
        f"vs {base_text} for a flat image of the training photos' mean colour (need +{margin:.1f} dB)",
        metadata={"value": psnr, "threshold": None if baseline is None else baseline + margin,
                  "baseline_psnr": baseline})


def check_coverage(plain: PlainScores, coverage: SfmCoverage, cfg: TrainConfig) -> CheckOutcome:
    """Mean alpha of the plain test-view renders. A splat that leaves parts of the photos transparent shows
    black holes in every viewer. Blocking where the SfM points show that the scene fills the photos (nadir
    surveys); where they do not (sky, far background) a low alpha may be right, so it only warns."""
    ok = math.isfinite(plain.alpha) and plain.alpha >= cfg.min_alpha
    where = ("the scene fills the photos, so this blocks" if coverage.fills
             else "the scene may leave parts of the photos empty (sky, far background), so this only warns")
    return CheckOutcome(
        "coverage", ok,
        f"mean alpha {plain.alpha:.3f} on the test views (need {cfg.min_alpha:.2f}); {coverage.describe()}: "
        f"{where}",
        blocking=coverage.fills,
        metadata={"value": plain.alpha, "threshold": cfg.min_alpha, "sfm_point_share": coverage.share,
                  "nadir_angle_deg": coverage.nadir_angle_deg, "scene_fills_photos": coverage.fills})


def check_floor(psnr: float, cfg: TrainConfig) -> CheckOutcome:
    ok = math.isfinite(psnr) and psnr >= cfg.psnr_floor_db
    return CheckOutcome("absolute_psnr_floor", ok,
                        f"test-view PSNR {psnr:.2f} dB (floor {cfg.psnr_floor_db:.1f} dB; few-view scenes "
                        "legitimately score lower, so this only warns)", blocking=False,
                        metadata={"value": psnr, "threshold": cfg.psnr_floor_db})


def quality_checks(cloud: GaussianCloud, ply_path: Path, plain: PlainScores, coverage: SfmCoverage,
                   cfg: TrainConfig, from_disk: GaussianCloud | None = None) -> list[CheckOutcome]:
    return [check_min_gaussians(cloud, cfg), check_finite(cloud), check_ply(ply_path, len(cloud), from_disk),
            check_baseline(plain, cfg), check_coverage(plain, coverage, cfg), check_floor(plain.psnr, cfg)]
