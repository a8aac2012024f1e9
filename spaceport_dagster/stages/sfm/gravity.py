"""Which way is up in a reconstruction, from the cameras alone (no GPS), and how upright a frame is.

Nadir surveys: the cameras look down, so up is minus their mean viewing direction, and a flight held at one
height puts the camera centres on a horizontal plane; the two are averaged when they agree. Other captures
(street, orbit): drones and people keep the camera level, so each camera's x axis is horizontal, and so is
the track of a ground-level or constant-height capture; up is the direction most orthogonal to all of them
(OpenSfM's "no roll" orientation prior works the same way). A survey is nadir when its viewing directions
cluster and the flight spreads across them, not along them (a forward-looking street capture also has
clustered views, but moves along them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NADIR_CLUSTER_DEG = 20.0  # cameras within this of the mean viewing direction form the nadir cluster
MIN_NADIR_FRACTION = 0.6
MAX_TRACK_ACROSS_VIEW_DEG = 15.0  # nadir: the flight plane's normal (or line) within this of the views
PLANE_AGREEMENT_DEG = 10.0  # views and camera plane averaged when they agree this well
MIN_SPREAD_RATIO = 0.15  # second / first singular value of the centres: a 2D spread, not a line
MAX_PLANARITY_RATIO = 0.15  # third / second singular value: the centres lie on a plane
MAX_LEVEL_CONDITION = 0.35  # level-axes estimate: smallest / middle singular value at most this


@dataclass
class CameraAxes:
    """World-frame camera axes (rows) and centres of the registered images."""

    x: np.ndarray  # (N, 3) image right
    y: np.ndarray  # (N, 3) image down
    z: np.ndarray  # (N, 3) viewing direction
    centres: np.ndarray  # (N, 3)

    @classmethod
    def of(cls, reconstruction: Any) -> CameraAxes:
        images = [reconstruction.image(i) for i in sorted(reconstruction.reg_image_ids())]
        rotations = np.array([img.cam_from_world().rotation.matrix() for img in images]).reshape(-1, 3, 3)
        centres = np.array([img.projection_center() for img in images]).reshape(-1, 3)
        return cls(rotations[:, 0], rotations[:, 1], rotations[:, 2], centres)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(_unit(a), _unit(b)), -1.0, 1.0))))


@dataclass
class Spread:
    """Shape of the camera centres: principal directions (rows, largest first) and singular values."""

    directions: np.ndarray
    singular: np.ndarray

    @classmethod
    def of(cls, centres: np.ndarray) -> Spread:
        if len(centres) < 2:
            return cls(np.eye(3), np.zeros(3))
        _, s, vt = np.linalg.svd(centres - centres.mean(axis=0), full_matrices=True)
        return cls(vt, np.pad(s, (0, 3 - len(s))))

    @property
    def is_2d(self) -> bool:
        return bool(self.singular[0] > 0 and self.singular[1] / self.singular[0] >= MIN_SPREAD_RATIO)

    @property
    def is_planar(self) -> bool:
        return self.is_2d and bool(self.singular[2] / self.singular[1] <= MAX_PLANARITY_RATIO)

    @property
    def is_line(self) -> bool:
        return bool(self.singular[0] > 0 and not self.is_2d)

    @property
    def normal(self) -> np.ndarray:
        return self.directions[2]

    @property
    def line(self) -> np.ndarray:
        return self.directions[0]


@dataclass
class UpEstimate:
    up: np.ndarray | None  # unit vector in the reconstruction's frame; None: the cameras do not fix it
    source: str  # how it was found
    nadir: bool
    flight: str  # "area", "line" or "point": the shape of the camera track
    views_vs_plane_deg: float | None = None  # nadir, area flights: mean viewing direction vs camera plane
    # each estimate the cameras give on their own (nadir: "views", "plane"; else "level"), for the altitude test
    candidates: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["up"] = None if self.up is None else [round(float(v), 6) for v in self.up]
        out["candidates"] = {k: [round(float(x), 6) for x in v] for k, v in self.candidates.items()}
        return out


def nadir_views(z: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean viewing direction of the largest cluster around the mean, and the fraction of cameras in it."""
    mean = _unit(z.mean(axis=0)) if np.linalg.norm(z.mean(axis=0)) > 1e-9 else z[0]
    for _ in range(3):  # re-centre on the cluster so a few obliques do not pull it
        inside = z @ mean >= np.cos(np.radians(NADIR_CLUSTER_DEG))
        if not inside.any():
            return mean, 0.0
        mean = _unit(z[inside].mean(axis=0))
    return mean, float(inside.mean())


def estimate_up(axes: CameraAxes) -> UpEstimate:
    spread = Spread.of(axes.centres)
    flight = "area" if spread.is_2d else ("line" if spread.is_line else "point")
    if len(axes.z) == 0:
        return UpEstimate(None, "no registered cameras", False, flight)
    view, fraction = nadir_views(axes.z)
    views_up = -view
    clustered = fraction >= MIN_NADIR_FRACTION
    if flight == "area":
        across = angle_deg(spread.normal, views_up)
        across = min(across, 180.0 - across)
        nadir = clustered and across <= MAX_TRACK_ACROSS_VIEW_DEG
    elif flight == "line":
        along = angle_deg(spread.line, views_up)
        nadir = clustered and abs(90.0 - along) <= MAX_TRACK_ACROSS_VIEW_DEG
    else:
        nadir = clustered
    if nadir:
        if flight == "area" and spread.is_planar:
            normal = spread.normal if spread.normal @ views_up > 0 else -spread.normal
            disagreement = angle_deg(normal, views_up)
            candidates = {"views": views_up, "plane": normal}
            if disagreement <= PLANE_AGREEMENT_DEG:
                return UpEstimate(_unit(normal + views_up), "nadir: mean viewing direction and camera plane", True,
                                  flight, round(disagreement, 3), candidates)
            return UpEstimate(views_up, "nadir: mean viewing direction (the camera plane disagrees by "
                              f"{disagreement:.1f} deg: not a flight at one height)", True, flight,
                              round(disagreement, 3), candidates)
        return UpEstimate(views_up, "nadir: mean viewing direction", True, flight, candidates={"views": views_up})
    return level_axes_up(axes, spread, flight)


def level_axes_up(axes: CameraAxes, spread: Spread, flight: str) -> UpEstimate:
    """Up as the direction most orthogonal to the cameras' x axes and the track (level cameras)."""
    rows = [axes.x]
    if flight != "point":
        track = (axes.centres - axes.centres.mean(axis=0)) / max(spread.singular[0] / np.sqrt(len(axes.centres)),
                                                                 1e-12)
        rows.append(track / np.sqrt(len(axes.centres)) * np.sqrt(len(axes.x)))  # as much weight as the axes
    _, s, vt = np.linalg.svd(np.vstack(rows), full_matrices=False)
    if len(s) < 3 or s[1] <= 0 or s[2] / s[1] > MAX_LEVEL_CONDITION:
        return UpEstimate(None, "cameras do not fix up (neither nadir nor level with varied headings)", False,
                          flight)
    up = vt[2]
    hint = -(axes.y + axes.z).mean(axis=0)  # image up and backwards both lean up for level, downward views
    up = up if up @ hint >= 0 else -up
    return UpEstimate(up, "level cameras: x axes and track horizontal", False, flight, candidates={"level": up})


@dataclass
class Uprightness:
    """How upright a frame is, measured in that frame (+z up)."""

    nadir: bool
    flight: str
    median_view_from_down_deg: float | None  # nadir surveys
    camera_plane_tilt_deg: float | None  # area flights at one height
    camera_line_slope_deg: float | None  # line flights
    estimated_up_tilt_deg: float | None  # the cameras' own up against +z

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def measure_uprightness(axes: CameraAxes) -> Uprightness:
    estimate = estimate_up(axes)
    spread = Spread.of(axes.centres)
    down = np.array([0.0, 0.0, -1.0])
    median_view = None
    if estimate.nadir and len(axes.z):
        cluster = axes.z[axes.z @ -(estimate.up if estimate.up is not None else -down)
                         >= np.cos(np.radians(NADIR_CLUSTER_DEG))]
        median_view = angle_deg(np.median(cluster if len(cluster) else axes.z, axis=0), down)
    plane_tilt = None
    if spread.is_planar:
        plane_tilt = angle_deg(spread.normal, np.array([0.0, 0.0, 1.0]))
        plane_tilt = min(plane_tilt, 180.0 - plane_tilt)
    line_slope = None
    if spread.is_line:
        line_slope = float(np.degrees(np.arcsin(min(1.0, abs(spread.line[2])))))
    up_tilt = angle_deg(estimate.up, np.array([0.0, 0.0, 1.0])) if estimate.up is not None else None
    return Uprightness(estimate.nadir, estimate.flight, median_view, plane_tilt, line_slope, up_tilt)
