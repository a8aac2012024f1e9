"""What `spaceport run`, `rerun` and `demo` print per stage: a progress line and its key figures."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spaceport_dagster.runner import StageOutcome

# The figures the summary table shows per stage.
KEY_FIGURES = {
    "image_set": ["usable_images", "refused_files", "gps_images"],
    "sparse_reconstruction": ["registered", "points", "mean_reprojection_error_px", "matcher", "georegistration_residual_m"],
    "colmap_export": ["images", "points", "image_size", "min_correspondences_per_image"],
    "splat_model": ["steps", "gaussians", "psnr", "baseline_psnr", "alpha_mean", "device"],
    "sogs_bundle": ["splats", "bundle_bytes", "ratio", "psnr_decoded_db", "psnr_drop_db"],
}



def format_figure(value: object) -> str:
    if isinstance(value, float):  # 4 significant digits: 20.03 dB, not 20
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stage_figures(stage: StageOutcome) -> str:
    """The stage's key figures, `name=value, ...`."""
    parts = [f"{k}={format_figure(stage.metadata[k])}" for k in KEY_FIGURES.get(stage.asset, []) if k in stage.metadata]
    return ", ".join(parts)


def print_progress(line: str) -> None:
    """A running stage's progress line (runner._ProgressWatch), for `spaceport run` and `spaceport demo`."""
    print(line, flush=True)


def print_stage(stage: StageOutcome) -> None:
    """One progress line per stage event, for `spaceport run` and `spaceport demo`."""
    seconds = f"{stage.seconds:6.1f}s" if stage.seconds is not None else "      "
    print(f"  [{stage.status:^11}] {stage.asset:<22} {seconds}  {stage_figures(stage)}", flush=True)


def ui_command() -> str:
    """How to open the UI on this home, as this command was started (`.venv/bin/spaceport`, a SPACEPORT_HOME)."""
    program = sys.argv[0] if Path(sys.argv[0]).name == "spaceport" else "spaceport"
    home = os.environ.get("SPACEPORT_HOME")
    return (f"SPACEPORT_HOME={home} " if home else "") + f"{program} ui"
