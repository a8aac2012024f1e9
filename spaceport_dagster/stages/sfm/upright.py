"""The `upright` gate: the published frame's up agrees with the survey's own.

Nadir surveys: the median viewing direction within the limit of straight down and, for a flight over an
area at one height, the camera plane within the limit of horizontal. Other captures: the cameras' level-axes
up within the limit of +z. A capture whose cameras fix no up (neither nadir nor level with varied headings)
cannot be judged: the check then does not pass, says so (`measured: false`) and only warns, so that an object
scan or a free-hand capture still publishes while the UI shows that its up was never checked.

Without GPS altitudes (no GPS, too few fixes, or altitudes not trusted: `altitude_used` false), the frame's up
was taken from these same cameras, so a nadir survey whose viewing direction and camera plane disagree by more than
the limit has nothing to arbitrate between them. Which of the two the up followed could flip with SfM's
run-to-run noise near gravity.PLANE_AGREEMENT_DEG, and the gate with it; instead the check then warns (naming
both angles) and blocks only when the frame does not follow the cameras' own up.
"""

from __future__ import annotations

from spaceport_dagster.stages.report import CheckOutcome

from .gravity import Uprightness


def upright_check(u: Uprightness, max_deg: float, gps_up: bool = True) -> CheckOutcome:
    """`gps_up`: the frame's up came from the GPS altitudes (georegistered with `altitude_used`, frame `enu`).
    Without them the up was taken from the cameras themselves, and nothing arbitrates between the viewing
    direction and the camera plane: a disagreement between the two is then warned about, never refused (see the
    module docstring)."""
    metadata = {**u.to_dict(), "threshold_deg": max_deg, "up_from_gps": gps_up}
    if u.nadir and u.median_view_from_down_deg is not None:
        parts = [f"median view direction {u.median_view_from_down_deg:.1f} deg from straight down"]
        passed = u.median_view_from_down_deg <= max_deg
        if u.camera_plane_tilt_deg is not None:
            parts.append(f"camera plane tilted {u.camera_plane_tilt_deg:.1f} deg")
            passed = passed and u.camera_plane_tilt_deg <= max_deg
        elif u.camera_line_slope_deg is not None:
            parts.append(f"single flight line, sloping {u.camera_line_slope_deg:.1f} deg (not gated)")
        text = f"nadir survey: {', '.join(parts)} (limit {max_deg:g} deg)"
        if passed or gps_up:
            return CheckOutcome("upright", passed, text, metadata={**metadata, "measured": True})
        return _without_gps(u, max_deg, text, metadata)
    if u.estimated_up_tilt_deg is not None:
        passed = u.estimated_up_tilt_deg <= max_deg
        text = (f"level cameras put up {u.estimated_up_tilt_deg:.1f} deg from the frame's +z "
                f"(limit {max_deg:g} deg)")
        return CheckOutcome("upright", passed, text, metadata={**metadata, "measured": True})
    return CheckOutcome("upright", False, "not measured: the cameras are neither nadir nor level with varied "
                        "headings, so they fix no up to compare with (a warning: the frame's up is unchecked)",
                        blocking=False, metadata={**metadata, "measured": False})


def _without_gps(u: Uprightness, max_deg: float, text: str, metadata: dict) -> CheckOutcome:
    """A nadir survey whose views and camera plane disagree by more than the limit, and no GPS altitude to say
    which one is level (a flight that climbs with the ground, or a gimbal a few degrees off nadir: both look
    the same to the cameras). One rule: the frame's up is the cameras' own estimate (gravity.estimate_up: the
    two averaged when they agree within 10 deg, else the viewing direction), and the check warns. It blocks
    only when the frame does not follow that estimate, which no SfM noise can cause."""
    tilt = u.estimated_up_tilt_deg
    if tilt is None or tilt > max_deg:
        return CheckOutcome("upright", False, f"{text}; the frame's up is {tilt if tilt is None else round(tilt, 1)} "
                            "deg from the cameras' own up", metadata={**metadata, "measured": True})
    return CheckOutcome(
        "upright", False,
        f"{text}: no GPS altitude to tell which of the two is level (a flight following the ground, or a camera "
        f"not pointed straight down); up taken from the cameras' own estimate ({tilt:.1f} deg from the frame's "
        "+z). A warning: the survey is not refused",
        blocking=False, metadata={**metadata, "measured": True, "arbitrated": False})
