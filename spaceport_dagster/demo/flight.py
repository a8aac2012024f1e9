"""The demo flight plan: a lawnmower at fixed altitude with the heading along each line, plus oblique shots.

Small deterministic jitter in position and attitude makes the poses look flown rather than computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .raycast import Camera

# nadir camera looking down with the image top to the north: x east, y south, z down
NADIR_NORTH = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]).T


@dataclass
class FlightPlan:
    altitude_m: float = 40.0  # above the take-off point (ground level at the origin)
    lines: int = 4
    line_spacing_m: float = 18.0
    shots_per_line: int = 6
    shot_spacing_m: float = 10.0
    obliques: int = 4
    oblique_tilt_deg: float = 30.0  # off nadir
    oblique_offset_m: float = 30.0  # horizontal distance of the oblique shots from the site centre
    width: int = 800
    height: int = 600
    focal_length_35mm: float = 24.0
    position_jitter_m: float = 0.4
    attitude_jitter_deg: float = 1.5
    seed: int = 7

    @property
    def focal_px(self) -> float:
        return self.focal_length_35mm / 36.0 * max(self.width, self.height)

    @property
    def count(self) -> int:
        return self.lines * self.shots_per_line + self.obliques


def _rz(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _rx(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])


def attitude(heading_deg: float, tilt_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """world_from_camera for a compass heading (clockwise from north; the image top points that way), a tilt
    off nadir towards the heading and a roll about the optical axis."""
    return _rz(-heading_deg) @ NADIR_NORTH @ _rx(tilt_deg) @ _rz(roll_deg)


def plan_cameras(plan: FlightPlan) -> list[tuple[str, Camera]]:
    """(kind, camera) in capture order: the lawnmower lines, then the obliques around the site."""
    rng = np.random.default_rng(plan.seed)
    cameras: list[tuple[str, Camera]] = []

    def jitter(n: int, scale: float) -> np.ndarray:
        return rng.uniform(-scale, scale, n)

    for line in range(plan.lines):
        x = (line - (plan.lines - 1) / 2) * plan.line_spacing_m
        northbound = line % 2 == 0
        for shot in range(plan.shots_per_line):
            k = shot if northbound else plan.shots_per_line - 1 - shot
            y = (k - (plan.shots_per_line - 1) / 2) * plan.shot_spacing_m
            centre = np.array([x, y, plan.altitude_m]) + jitter(3, plan.position_jitter_m)
            heading, tilt, roll = jitter(3, plan.attitude_jitter_deg)
            rotation = attitude((0.0 if northbound else 180.0) + heading, tilt, roll)
            cameras.append(("nadir", Camera(plan.width, plan.height, plan.focal_px, centre, rotation)))
    for i in range(plan.obliques):
        bearing = 360.0 * i / max(plan.obliques, 1) + 45.0  # from the site centre to the camera
        b = math.radians(bearing)
        centre = np.array([plan.oblique_offset_m * math.sin(b), plan.oblique_offset_m * math.cos(b), plan.altitude_m])
        rotation = attitude((bearing + 180.0) % 360.0, plan.oblique_tilt_deg, float(jitter(1, plan.attitude_jitter_deg)[0]))
        cameras.append(("oblique", Camera(plan.width, plan.height, plan.focal_px, centre, rotation)))
    return cameras
