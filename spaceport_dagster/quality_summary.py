"""One line on the trained splat as users see it, for the command line (`spaceport run`, `spaceport demo`).

The figures are splat_model's headline ones (`stages/evaluation.py`): the published PLY rendered plainly on
the test views, against a flat image of the photos' mean colour.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def splat_quality_line(stages: Iterable[Any]) -> str | None:
    """The line for a run's stage outcomes (`runner.StageOutcome`); None when splat_model did not run or its
    metadata lacks the plain figures (it failed early)."""
    splat = next((s for s in stages if s.asset == "splat_model"), None)
    metadata: dict[str, Any] = splat.metadata if splat is not None else {}
    try:
        psnr, baseline, alpha = (float(metadata[k]) for k in ("psnr", "baseline_psnr", "alpha_mean"))
    except (KeyError, TypeError, ValueError):
        return None
    views, size = metadata.get("views"), metadata.get("resolution", "")
    corrected = metadata.get("psnr_colour_corrected")
    line = (f"splat as a viewer shows it ({views} test views, {size}, black background, no colour model): "
            f"PSNR {psnr:.2f} dB vs {baseline:.2f} dB for a flat mean-colour image ({psnr - baseline:+.2f} dB), "
            f"mean alpha {alpha:.3f}")
    if corrected is not None:
        line += f"; colour-corrected PSNR {float(corrected):.2f} dB (secondary)"
    return line
