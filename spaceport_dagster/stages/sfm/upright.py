"""The `upright` gate: the published frame's up agrees with the survey's own.

Nadir surveys: the median viewing direction within the limit of straight down and, for a flight over an
area at one height, the camera plane within the limit of horizontal. Other captures: the cameras' level-axes
up within the limit of +z. A capture whose cameras fix no up (neither nadir nor level with varied headings)
cannot be judged: the check then does not pass, says so (`measured: false`) and only warns, so that an object
scan or a free-hand capture still publishes while the UI shows that its up was never checked.
"""

from __future__ import annotations

from spaceport_dagster.stages.report import CheckOutcome

from .gravity import Uprightness


def upright_check(u: Uprightness, max_deg: float) -> CheckOutcome:
    metadata = {**u.to_dict(), "threshold_deg": max_deg}
    if u.nadir and u.median_view_from_down_deg is not None:
        parts = [f"median view direction {u.median_view_from_down_deg:.1f} deg from straight down"]
        passed = u.median_view_from_down_deg <= max_deg
        if u.camera_plane_tilt_deg is not None:
            parts.append(f"camera plane tilted {u.camera_plane_tilt_deg:.1f} deg")
            passed = passed and u.camera_plane_tilt_deg <= max_deg
        elif u.camera_line_slope_deg is not None:
            parts.append(f"single flight line, sloping {u.camera_line_slope_deg:.1f} deg (not gated)")
        text = f"nadir survey: {', '.join(parts)} (limit {max_deg:g} deg)"
        return CheckOutcome("upright", passed, text, metadata={**metadata, "measured": True})
    if u.estimated_up_tilt_deg is not None:
        passed = u.estimated_up_tilt_deg <= max_deg
        text = (f"level cameras put up {u.estimated_up_tilt_deg:.1f} deg from the frame's +z "
                f"(limit {max_deg:g} deg)")
        return CheckOutcome("upright", passed, text, metadata={**metadata, "measured": True})
    return CheckOutcome("upright", False, "not measured: the cameras are neither nadir nor level with varied "
                        "headings, so they fix no up to compare with (a warning: the frame's up is unchecked)",
                        blocking=False, metadata={**metadata, "measured": False})
