"""Demo surveys of a chosen size: N photos, any photo size, camera-GPS errors, a grid or a corridor flight.

The grid keeps the default flight's overlaps (18 m between lines, 10 m between shots at 40 m with a 24 mm
equivalent lens: about 70 % side and 78 % forward overlap) and grows the site with it, so every photo sees
textured ground; the number of buildings and trees grows with the site's area.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .flight import FlightPlan
from .scene import SceneSpec
from .survey import GpsErrors, SurveySpec

DEFAULT_AREA_M2 = 4 * 80.0 * 70.0  # the default scene's extent
MARGIN_M = 10.0


def survey_for(photos: int, width: int = 800, height: int = 600, corridor: bool = False,
               altitude_drift_m: float = 0.0, horizontal_noise_m: float = 0.0, render_scale: int = 1,
               seed: int = 7) -> SurveySpec:
    """A survey of exactly `photos` photos: a grid plus obliques (at least 4 from 20 photos up), or one line."""
    if photos < 2:
        raise ValueError(f"a survey needs at least 2 photos, not {photos}")
    base = FlightPlan()
    if corridor:
        lines, shots = 1, photos
    else:
        nadir = photos - (4 if photos >= 20 else 0)
        # about as wide as long: lines * line_spacing ~ shots * shot_spacing; the remainder flies obliques
        shots = max(2, round(math.sqrt(nadir * base.line_spacing_m / base.shot_spacing_m)))
        lines = max(1, nadir // shots)
        shots = nadir // lines
    obliques = photos - lines * shots
    flight = replace(base, lines=lines, shots_per_line=shots, obliques=obliques, width=width, height=height,
                     seed=seed, oblique_offset_m=min(base.oblique_offset_m, 0.4 * max(lines, 2) * base.line_spacing_m))
    footprint_x = base.altitude_m * 36.0 / base.focal_length_35mm / 2  # half the ground width of a photo
    footprint_y = footprint_x * min(width, height) / max(width, height)
    half_x = (lines - 1) * base.line_spacing_m / 2 + footprint_x + MARGIN_M
    half_y = (shots - 1) * base.shot_spacing_m / 2 + footprint_y + MARGIN_M
    area = 4 * half_x * half_y
    scene = SceneSpec(half_x=half_x, half_y=half_y, seed=seed,
                      buildings=max(2, round(SceneSpec.buildings * area / DEFAULT_AREA_M2)),
                      trees=max(8, round(SceneSpec.trees * area / DEFAULT_AREA_M2)))
    spec = SurveySpec(scene=scene, flight=flight, gps=GpsErrors(altitude_drift_m, horizontal_noise_m),
                      render_scale=render_scale)
    assert spec.flight.count == photos, (spec.flight, photos)
    return spec
