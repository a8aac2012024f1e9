"""Does the scene fill the photos? Read from the cameras and the SfM points, not guessed from the upload.

Two signs, either suffices:
- nadir: the SfM points lie near a plane and the cameras look straight at it (median angle between the view
  direction and the plane's normal at most `NADIR_DEG`): the ground fills every photo of a mapping flight,
  textureless sand or water included, where SfM finds no points;
- points everywhere: each view is cut into a grid of cells, and in the median view at least `FILLS_SHARE` of
  the cells hold an SfM point in front of the camera.
Sky, far background or the space around an object leave whole rows of cells empty and the cameras oblique.
Where the scene fills the photos, a splat that leaves parts of a test view transparent is wrong (every viewer
shows black holes there), and the coverage check blocks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spaceport_dagster.stages.render import View

GRID = 8  # cells along the long side of a photo
FILLS_SHARE = 0.95  # points everywhere: at least this share of cells holds an SfM point (median view)
NADIR_DEG = 20.0  # nadir: median angle between the view directions and the ground plane's normal
PLANARITY = 0.1  # the points are near a plane: smallest / middle principal variance at most this


@dataclass
class SfmCoverage:
    share: float  # median over views of the share of cells holding an SfM point
    nadir_angle_deg: float | None  # median angle of the views from the points' plane normal (None: not planar)
    fills: bool

    def describe(self) -> str:
        nadir = ("the points are not near one plane" if self.nadir_angle_deg is None
                 else f"views {self.nadir_angle_deg:.0f} deg from the ground plane's normal")
        return f"SfM points in {self.share:.0%} of the photo area, {nadir}"


def cell_share(view: View, points: np.ndarray, grid: int = GRID) -> float:
    """Share of `view`'s grid cells (`grid` along the long side) into which an SfM point projects."""
    cam = view.viewmat[:3, :3] @ points.T + view.viewmat[:3, 3:4]
    front = cam[2] > 1e-6
    uv = (view.K @ cam[:, front])[:2] / cam[2, front]
    cell = max(view.width, view.height) / grid
    cols, rows = max(1, round(view.width / cell)), max(1, round(view.height / cell))
    inside = (uv[0] >= 0) & (uv[0] < view.width) & (uv[1] >= 0) & (uv[1] < view.height)
    cx = np.minimum((uv[0, inside] / view.width * cols).astype(int), cols - 1)
    cy = np.minimum((uv[1, inside] / view.height * rows).astype(int), rows - 1)
    return len(set(zip(cx.tolist(), cy.tolist(), strict=True))) / (cols * rows)


def nadir_angle(views: list[View], points: np.ndarray) -> float | None:
    """Median angle (degrees) between the views' directions and the normal of the plane the points lie near,
    oriented from the cameras towards it; None when the points are not near a plane."""
    if len(points) < 10 or not views:
        return None
    centre = np.median(points, axis=0)
    variances, axes = np.linalg.eigh(np.cov((points - centre).T.astype(np.float64)))
    if variances[1] <= 0 or variances[0] / variances[1] > PLANARITY:
        return None
    normal = axes[:, 0]
    centres = np.stack([-v.viewmat[:3, :3].T @ v.viewmat[:3, 3] for v in views])
    normal = normal * -np.sign(np.median((centres - centre) @ normal) or 1.0)  # from the cameras to the plane
    forward = np.stack([v.viewmat[2, :3] for v in views])  # camera +z (the view direction) in world axes
    return float(np.degrees(np.median(np.arccos(np.clip(forward @ normal, -1.0, 1.0)))))


def sfm_coverage(views: list[View], points: np.ndarray) -> SfmCoverage:
    share = float(np.median([cell_share(v, points) for v in views])) if views and len(points) else 0.0
    angle = nadir_angle(views, points)
    return SfmCoverage(share, angle, share >= FILLS_SHARE or (angle is not None and angle <= NADIR_DEG))
